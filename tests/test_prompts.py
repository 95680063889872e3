"""The prompt module: the one rule that makes a prompt fit the model."""

from __future__ import annotations

import pytest

from tallrec.prompts import RecTemplate, TooLong, fit_prompt


def test_fit_prompt_drops_the_oldest_first():
    t = RecTemplate.from_params("movie")
    history = [("old", True), ("older-dislike", False), ("mid", True), ("new", False)]
    n_words = lambda text: len(text.split())  # noqa: E731 - a stand-in tokenizer
    full = t.full_prompt(["old", "mid"], ["older-dislike", "new"], "x")
    assert fit_prompt(t, history, "x", n_words, n_words(full)) == (full, 0)
    prompt, dropped = fit_prompt(t, history, "x", n_words, n_words(full) - 1)
    assert dropped == 1 and prompt == t.full_prompt(["mid"], ["older-dislike", "new"], "x")
    prompt, dropped = fit_prompt(t, history, "x", n_words, n_words(t.full_prompt([], [], "x")))
    assert dropped == 4
    with pytest.raises(TooLong):
        fit_prompt(t, history, "x", n_words, n_words(t.full_prompt([], [], "x")) - 1)
