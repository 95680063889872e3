"""The one padding rule for token rows: training (tallrec.train) and scoring (tallrec.scoring) both use it.

Rows are LEFT padded, so every row's last real token sits in the last column (the scored answer position,
and the end of a training example's answer), and position ids count real tokens only, so a padded row
reads exactly like the same row alone. The pad id is the tokenizer's pad token, else its end-of-text
token, else 0; the value never reaches a real token (the attention mask hides it), but one lookup keeps
the tensors of both paths alike.

It is a module of its own, below both users, because training imports scoring (validation after each
epoch): neither can hold the rule without the other importing in a circle.
"""

from __future__ import annotations

from typing import Sequence

import torch


def pad_id_of(tokenizer) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return int(pad if pad is not None else 0)


def left_pad(rows: Sequence[Sequence[int]], fill: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, attention mask), each (len(rows), longest row): row b's values in its last columns."""
    width = max(len(r) for r in rows)
    x = torch.full((len(rows), width), fill, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, r in enumerate(rows):
        x[b, width - len(r) :] = torch.tensor(r)
        mask[b, width - len(r) :] = 1
    return x, mask


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count real tokens only (a pad column gets 0, as the first token)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)
