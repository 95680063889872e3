"""K-shot draws from the train split: seeded, without replacement; "both" takes K from each domain."""

from __future__ import annotations

import numpy as np
import polars as pl
from rich.progress import Progress

from tallrec import paths
from tallrec.config import Params
from tallrec.io import atomic_dir, write_parquet
from tallrec.names import DOMAINS


def draw(train: pl.DataFrame, k: int, seed: int, domain: str) -> pl.DataFrame:
    if k > train.height:
        raise ValueError(f"sample.ks: K={k} is larger than the {domain} train split ({train.height} rows)")
    # one independent stream per (seed, domain), so adding a domain never changes another's draw
    rng = np.random.default_rng([seed, DOMAINS.index(domain)])
    return train[np.sort(rng.choice(train.height, size=k, replace=False))]


def k_shot(trains: dict[str, pl.DataFrame], domain: str, k: int, seed: int) -> pl.DataFrame:
    domains = DOMAINS if domain == "both" else (domain,)
    return pl.concat([draw(trains[d], k, seed, d) for d in domains])


def sample(params: Params) -> list[str]:
    """Write every configured K-shot draw into data/processed/shots/ as one atomic directory."""
    cfg = params.sample
    trains = {d: pl.read_parquet(paths.split_path(d, "train")) for d in DOMAINS}
    jobs = [(d, k, s) for d in cfg.domains for k in cfg.ks for s in cfg.seeds]
    written = []
    with atomic_dir(paths.SHOTS) as tmp, Progress() as progress:
        task = progress.add_task("sample K-shot draws", total=len(jobs))
        for d, k, s in jobs:
            target = paths.shot_path(d, k, s)
            write_parquet(k_shot(trains, d, k, s), tmp / target.relative_to(paths.SHOTS))
            written.append(str(target))
            progress.advance(task)
    return written
