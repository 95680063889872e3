"""Examples -> token ids -> padded tensors (the padding rule itself is tallrec.batching's)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence


from tallrec.batching import left_pad
from tallrec.prompts import answer_tokens

if TYPE_CHECKING:
    from tallrec.train.loop import TrainConfig

IGNORE = -100  # label of a token that gets no loss


def encode(tokenizer, prompt: str, answer: list[int] | str, cfg: TrainConfig) -> tuple[list[int], list[int]] | None:
    """(input_ids, labels) for one example, or None when nothing of the answer fits.

    The answer's ids are the ones it has after "### Response:\\n" (prompts.answer_tokens, which the
    scorer reads too), so the model is trained on exactly the token whose logit is scored.
    """
    p = tokenizer(prompt)["input_ids"]
    a = answer_tokens(tokenizer, answer, strict=False) if isinstance(answer, str) else list(answer)
    if tokenizer.eos_token_id is not None:
        a = a + [tokenizer.eos_token_id]  # teaches the model to stop after the answer
    ids = (p + a)[: cfg.max_length]  # cut on the right as the original did; long alpaca tails go
    labels = ids.copy() if cfg.train_on_inputs else ([IGNORE] * len(p) + a)[: cfg.max_length]
    if len(p) >= len(ids) or all(t == IGNORE for t in labels[1:]):
        return None
    return ids, labels


def encode_all(tokenizer, prompts: Sequence[str], answers: Sequence[str], cfg: TrainConfig):
    cache: dict[str, list[int]] = {}  # the rec answers are two texts: look each up once
    out = []
    for p, a in zip(prompts, answers):
        if a not in cache:
            cache[a] = answer_tokens(tokenizer, a, strict=False)
        out.append(encode(tokenizer, p, cache[a], cfg))
        if len(cache) > 4:
            cache.clear()  # Alpaca answers are all different: no point keeping them
    return [e for e in out if e is not None]


def collate(examples, pad_id: int):
    """(input ids, labels, attention mask), left padded, so the answers of all rows end at the last
    column (see `loop.loss_of`); pad columns get no loss."""
    x, mask = left_pad([ids for ids, _ in examples], pad_id)
    y, _ = left_pad([labels for _, labels in examples], IGNORE)
    return x, y, mask


def target_tokens(batch) -> int:
    return sum(sum(t != IGNORE for t in labels[1:]) for _, labels in batch)
