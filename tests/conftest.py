"""Shared fixtures: a tiny randomly initialised LLaMA-architecture backbone, built in-process."""

from __future__ import annotations

from pathlib import Path

from tallrec import numerics

numerics.pin()  # the suite runs under the stages' canonical numerics, set before torch or numpy loads

import polars as pl
import pytest

from tallrec.config import PromptParams
from tallrec.prompts import alpaca_prompt

ROOT = Path(__file__).resolve().parents[1]

TINY_CORPUS_WORDS = (
    "Yes. No. User Preference: Unpreference: Whether the user will like the target movie book "
    '"Toy Story (1995)" "Heat (1995)" written by Jane Austen Alpha Beta Gamma Delta Epsilon'
)


def build_tiny_backbone(folder: Path, seed: int = 0) -> Path:
    """Save a tiny LLaMA (2 layers, width 64) and a byte-level BPE tokenizer trained on prompt text.

    The folder loads like a real base model folder with `from_pretrained`.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    corpus = [alpaca_prompt(PromptParams().instruction.format(noun=n), TINY_CORPUS_WORDS) for n in ("movie", "book")]
    corpus += [TINY_CORPUS_WORDS, "Yes.", "No."] * 20
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<pad>", "<s>", "</s>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> Path:
    """Folder of a tiny random LLaMA + tokenizer; loads with AutoModelForCausalLM/AutoTokenizer."""
    return build_tiny_backbone(tmp_path_factory.mktemp("tiny_backbone"))


@pytest.fixture(scope="session")
def real_movie_test(tmp_path_factory) -> pl.DataFrame:
    """The real MovieLens test split, prepared from the data mirror exactly as the prepare stage does."""
    from tallrec import data
    from tallrec.config import load_params

    params = load_params(ROOT / "params.yaml")
    raw = tmp_path_factory.mktemp("raw")
    data.fetch(ROOT / params.data.mirror, raw, data.RAW_FILES["movie"])
    splits, _ = data.prepare_movie(raw, params.data.movie, params.prompt)
    return splits["test"]


@pytest.fixture(scope="session")
def smollm2_base(tmp_path_factory) -> Path:
    """The converted SmolLM2 folder: the pipeline's own if it is there, else converted once (~1 min)."""
    from tallrec import model

    built = ROOT / "models" / "base" / "smollm2-135m"
    if (built / "model.safetensors").exists() and (built / model.BASE_INFO).exists():
        return built
    return model.build_base("smollm2-135m", out=tmp_path_factory.mktemp("smollm2") / "smollm2-135m")


@pytest.fixture(autouse=True)
def restore_torch_threads():
    """A command run in-process (CliRunner) sets torch's thread count for the whole process
    (tallrec.runtime.configure_threads); every test starts from the count the session started with."""
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def sigkill_when_paused(child, marker: Path, timeout: float = 300) -> None:
    """Wait until a child process writes `marker` (its hook paused it at a known point), then SIGKILL it:
    the deterministic kill point both the tuning and the pipeline kill tests use."""
    import os
    import signal
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and child.poll() is None and not marker.exists():
        time.sleep(0.05)
    assert marker.exists() and child.poll() is None, child.stderr.read() if child.poll() is not None else "no pause"
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
