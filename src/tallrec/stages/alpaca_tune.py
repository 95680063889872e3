"""alpaca_tune (stage 1): LoRA-tune the base on Alpaca samples into models/alpaca/<name>/."""

from __future__ import annotations

from dataclasses import asdict

from tallrec import paths
from tallrec.config import Params, as_dict
from tallrec.io import DataError


def main(params: Params) -> str:
    from tallrec.model import add_lora, base_dir, load_base
    from tallrec.runtime import configure_threads
    from tallrec.train.batches import encode_all
    from tallrec.train.checkpoint import base_digest, code_digest, fingerprint_of
    from tallrec.train.loop import TrainConfig, train

    configure_threads(params.model.threads)
    section = params.alpaca_tune
    cfg = TrainConfig.of(section, section.max_length, section.seed)
    prompts, answers = alpaca_examples(section.max_samples, cfg.seed)
    base = base_dir(params.model.name)
    # the fingerprint keys the resume checkpoint: params, inputs and the training code
    fingerprint = fingerprint_of(
        "alpaca",
        as_dict(params.model),
        as_dict(params.lora),
        asdict(cfg),
        len(prompts),
        base_digest(base),
        code_digest(),
    )
    model, tokenizer = load_base(base, params.model)
    examples = encode_all(tokenizer, prompts, answers, cfg)
    model = add_lora(model, params.lora, seed=cfg.seed)
    state = train(
        model,
        tokenizer,
        examples,
        cfg,
        paths.alpaca_adapter_dir(params.model.name),
        fingerprint=fingerprint,
        prompt=params.prompt,
        desc="alpaca_tune",
    )
    return f"alpaca_tune: {state.epoch} epochs, {state.global_step} steps, last loss {state.history[-1]['loss']:.4f}"


def alpaca_examples(max_samples: int | None, seed: int) -> tuple[list[str], list[str]]:
    """(prompts, answers) of a seeded subset of the Alpaca samples, not the first rows."""
    import numpy as np
    import polars as pl

    from tallrec.prompts import alpaca_prompt

    path = paths.split_path("alpaca", "train")
    if not path.exists():
        raise DataError(path, "alpaca samples not found (run `tallrec prepare alpaca`)")
    df = pl.read_parquet(path)
    order = np.random.default_rng(seed).permutation(df.height)
    if max_samples:
        order = order[:max_samples]
    df = df[order.tolist()]
    return [alpaca_prompt(i, x) for i, x in zip(df["instruction"], df["input"])], df["output"].to_list()


if __name__ == "__main__":
    from tallrec.stages import run

    run(main)
