"""alpaca_tune (stage 1): LoRA-tune the base on Alpaca samples into models/alpaca/<name>/."""

from __future__ import annotations

from dataclasses import asdict

from tallrec import paths
from tallrec.config import Params, as_dict


def main(params: Params) -> str:
    from tallrec.model import add_lora, base_dir, load_base
    from tallrec.runtime import configure_threads
    from tallrec.tuning import TrainConfig, alpaca_examples, base_digest, code_digest, encode_all, fingerprint_of, train

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


if __name__ == "__main__":
    from tallrec.stages import run

    run(main)
