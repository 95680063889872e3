"""The one home of every prompt text and of the answer-token lookup.

The recommendation template (its texts live in params.yaml's `prompt:` section, typed by
tallrec.config.PromptParams) reproduces the released TALLRec data character for character; the Alpaca
wrapper is the one TALLRec (after alpaca-lora) trains and evaluates with. Its last line is
"### Response:\\n", so the answer starts right after a newline, with no leading space.

`answer_tokens` is the one place that turns an answer into token ids, for the training labels and for
the scorer's Yes/No logits alike; `fit_prompt` is the one rule that makes a prompt fit the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import polars as pl

from tallrec.config import PromptParams
from tallrec.io import DataError

ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes "
    "the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)

# any prompt that ends like the real ones; only its last line matters for the answer's tokens
_PROBE = ALPACA_WITH_INPUT.format(instruction="Answer the question.", input="Is this a probe?")


def alpaca_prompt(instruction: str, input: str = "") -> str:
    """The text the model reads before its answer."""
    if input:
        return ALPACA_WITH_INPUT.format(instruction=instruction, input=input)
    return ALPACA_NO_INPUT.format(instruction=instruction)


# ---------------------------------------------------------------------------------- answer tokens


def answer_tokens(tokenizer, answer: str, strict: bool = True) -> list[int]:
    """Token ids of `answer` as they follow a prompt ending "### Response:\\n".

    Found by tokenizing a probe prompt with and without the answer and keeping the new tokens, so the
    ids are the ones the model meets in context: a SentencePiece tokenizer (LLaMA, Gemma) turns "Yes."
    alone into "▁Yes" + "." but after a newline into "Yes" + ".". Handles tokenizers that add <bos>
    (Gemma) or merge ":\\n" (Qwen). When the answer merges with the prompt's last token no boundary
    exists: `strict` raises, else the answer is tokenized alone (long Alpaca answers may start so).
    """
    base = tokenizer(_PROBE)["input_ids"]
    full = tokenizer(_PROBE + answer)["input_ids"]
    if len(full) > len(base) and full[: len(base)] == base:
        return [int(t) for t in full[len(base) :]]
    if strict:
        raise ValueError(
            f"tokenizer {type(tokenizer).__name__} merges answer {answer!r} with the prompt's final "
            "newline; no single next-token logit scores it"
        )
    return [int(t) for t in tokenizer(answer, add_special_tokens=False)["input_ids"]]


def answer_token_ids(tokenizer, yes: str, no: str) -> tuple[int, int]:
    """The first token of each answer: the two logits a score compares."""
    yes_id, no_id = answer_tokens(tokenizer, yes)[0], answer_tokens(tokenizer, no)[0]
    if yes_id == no_id:
        raise ValueError(f"answers {yes!r} and {no!r} start with the same token id {yes_id}; they cannot be told apart")
    return yes_id, no_id


# ----------------------------------------------------------------------------- the rec template


@dataclass(frozen=True)
class RecTemplate:
    """Renders one (history, target) pair of a domain as instruction / input / output text."""

    domain: str
    prompt: PromptParams

    @classmethod
    def from_params(cls, domain: str, prompt: PromptParams | None = None) -> "RecTemplate":
        prompt = prompt or PromptParams()
        if domain not in prompt.items:
            raise ValueError(f"no item template for domain {domain!r} in params prompt.items")
        return cls(domain, prompt)

    @property
    def noun(self) -> str:
        return self.prompt.items[self.domain].noun

    def item_text(self, **fields: str) -> str:
        return self.prompt.items[self.domain].text.format(**fields)

    @property
    def instruction(self) -> str:
        return self.prompt.instruction.format(noun=self.noun)

    def input(self, liked: Sequence[str], disliked: Sequence[str], target: str) -> str:
        sep = self.prompt.separator
        return self.prompt.input.format(
            liked=sep.join(liked), disliked=sep.join(disliked), noun=self.noun, target=target
        )

    def output(self, label: int) -> str:
        return self.prompt.yes if label else self.prompt.no

    def full_prompt(self, liked: Sequence[str], disliked: Sequence[str], target: str) -> str:
        return alpaca_prompt(self.instruction, self.input(liked, disliked, target))


class TooLong(ValueError):
    """Even with no history left, the prompt does not fit the model."""


def fit_prompt(
    template: RecTemplate, history: Sequence[tuple[str, bool]], target: str, n_tokens: Callable[[str], int], budget: int
) -> tuple[str, int]:
    """(prompt, how many history items were dropped): the oldest history items go first until the
    prompt takes at most `budget` tokens. `history` is (item text, liked) oldest first. The one rule for
    training, evaluation and `tallrec score`; a prompt that fits is rendered exactly as the data's."""

    def render(items) -> str:
        return template.full_prompt([t for t, y in items if y], [t for t, y in items if not y], target)

    prompt = render(history)
    if n_tokens(prompt) <= budget:
        return prompt, 0
    lo, hi = 1, len(history)  # the fewest drops that fit; fewer items never make a prompt longer
    target_alone = n_tokens(render(()))
    if target_alone > budget:
        raise TooLong(f"the target alone makes a prompt of {target_alone} tokens, more than the {budget} allowed")
    while lo < hi:
        mid = (lo + hi) // 2
        if n_tokens(render(history[mid:])) <= budget:
            hi = mid
        else:
            lo = mid + 1
    return render(history[lo:]), lo


def prompt_budget(tokenizer, prompt: PromptParams, max_length: int, context_length: int) -> int:
    """Tokens a prompt may take so that it, the longer answer and an end-of-text token fit both
    `model.max_length` and the model's own context length."""
    room = max(len(answer_tokens(tokenizer, prompt.yes)), len(answer_tokens(tokenizer, prompt.no))) + 1
    return min(max_length, context_length) - room


def token_counter(tokenizer) -> Callable[[str], int]:
    """How many tokens a text takes: the measure `fit_prompt` cuts by."""
    return lambda text: len(tokenizer(text)["input_ids"])


def rec_prompts(df: pl.DataFrame, prompt: PromptParams, tokenizer, budget: int) -> tuple[list[str], int]:
    """(full prompts, how many were shortened) of a split's rows. A row whose rendered prompt is longer
    than `budget` tokens is rendered again from its history with `fit_prompt`; a row whose target alone
    is too long is a DataError naming it."""
    prompts = [alpaca_prompt(i, x) for i, x in zip(df["instruction"], df["input"])]
    lengths = [len(ids) for ids in tokenizer(prompts)["input_ids"]]
    shortened = 0
    for r in (r for r, n in enumerate(lengths) if n > budget):
        row = df.row(r, named=True)
        history = list(zip(row["history_texts"], (bool(y) for y in row["history_labels"])))
        try:
            prompts[r], _ = fit_prompt(
                RecTemplate.from_params(row["domain"], prompt),
                history,
                row["target_text"],
                token_counter(tokenizer),
                budget,
            )
        except TooLong as e:
            raise DataError(f"{row['domain']} user {row['user']} target {row['target_item_id']}", str(e)) from None
        shortened += 1
    return prompts, shortened
