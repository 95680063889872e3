"""The project's names, each in one place: domains, variants, baselines, table rows, the run name.

Everything that lists a domain, a variant or a baseline (params checks, stage arguments, the report's
rows, the baselines' registry) imports it from here; `dvc.yaml` spells the run name out again in its
matrix templates (YAML cannot call Python), and `tests/test_dvc.py` checks that spelling against `run_name`.
"""

from __future__ import annotations

import typing
from typing import Literal

Domain = Literal["movie", "book"]
ShotDomain = Literal["movie", "book", "both"]  # "both" takes K from each domain
Variant = Literal["tallrec", "rt", "at"]  # continue stage 1, a fresh adapter, stage 1 alone
IdBaseline = Literal["gru4rec", "caser", "sasrec", "dros"]  # item ids (and like/dislike) only
TextBaseline = Literal["gru_bert", "dros_bert"]  # they read item-text vectors (the text_embed stage)

DOMAINS: tuple[str, ...] = typing.get_args(Domain)
SHOT_DOMAINS: tuple[str, ...] = typing.get_args(ShotDomain)
VARIANTS: tuple[str, ...] = typing.get_args(Variant)
ID_BASELINES: tuple[str, ...] = typing.get_args(IdBaseline)
TEXT_BASELINES: tuple[str, ...] = typing.get_args(TextBaseline)
BASELINES: tuple[str, ...] = ID_BASELINES + TEXT_BASELINES  # the paper's order
ICL = "icl"  # the untuned backbone's row


def run_name(variant: str, train_domain: str, k: int, seed: int) -> str:
    """A rec-tuning configuration's name (folders, summaries, curves): every coordinate spelled out."""
    return f"{variant}_{train_domain}_k{k}_seed{seed}"
