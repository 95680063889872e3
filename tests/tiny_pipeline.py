"""A tiny pipeline, run in a process of its own, that prints the sha256 of every output file as JSON.

    python tests/tiny_pipeline.py FOLDER [--threads N] [--workers N]

A tiny LLaMA built in-process from a config (its random init included), alpaca_tune, rec_tune,
evaluate and evaluate_icl through their stage modules, one ID baseline (SASRec: attention, LayerNorm,
Adam) over two seeds, and the AUC JSONs. tests/test_numerics.py runs it natively and under
`qemu-x86_64 -cpu <an AVX2-only model>` and compares the digests: the canonical numerics
(tallrec.numerics) promise the same bytes on both.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from dataclasses import astuple
from pathlib import Path

import tallrec.stages  # noqa: F401  (first: the canonical numerics are in place before torch loads)
from tallrec import paths

HERE = Path(__file__).resolve().parent
RUN_SPECIFIC = (paths.RUN_LOGS.name, paths.SCRATCH.name)  # run logs and checkpoints: no pipeline output


def build(folder: Path, threads: int, workers: int) -> None:
    sys.path.insert(0, str(HERE))
    import polars as pl
    from conftest import build_tiny_backbone
    from test_baselines import synthetic
    from test_tuning import toy_frame

    from tallrec.baselines.run import run_model
    from tallrec.config import Params, RecRun, with_changes
    from tallrec.model import build_base
    from tallrec.stages import alpaca_tune, evaluate, evaluate_icl, rec_tune

    os.chdir(folder)
    source = build_tiny_backbone(Path("backbone"))
    for split, n, seed in (("valid", 8, 1), ("test", 12, 2)):
        path = paths.split_path("movie", split)
        path.parent.mkdir(parents=True, exist_ok=True)
        toy_frame(n, seed).write_parquet(path)
    toy_frame(8, 3).write_parquet(_mkparent(paths.shot_path("movie", 8, 0)))
    book = [synthetic(n, seed).with_columns(domain=pl.lit("book")) for n, seed in ((200, 4), (60, 5), (80, 6))]
    for split, df in zip(("valid", "test"), book[1:]):
        df.write_parquet(_mkparent(paths.split_path("book", split)))
    for seed in (0, 1):
        book[0].sample(n=64, seed=seed).write_parquet(_mkparent(paths.shot_path("book", 16, seed)))
    pl.DataFrame(
        {
            "instruction": ["Say yes.", "Name a colour.", "Add 1 and 2.", "Say no."],
            "input": ["", "", "", "Please."],
            "output": ["Yes.", "Red.", "3", "No."],
        }
    ).write_parquet(_mkparent(paths.split_path("alpaca", "train")))

    params = with_changes(
        Params(),
        {
            "data": {"book": {"history_len": 10}},
            "sample": {"ks": [8, 16], "seeds": [0, 1]},
            "model": {
                "name": "tiny",
                "source": str(source),
                "dtype": "fp32",
                "device": "cpu",
                "max_length": 256,
                "threads": threads,
            },
            "lora": {"r": 4, "alpha": 16, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]},
            "alpaca_tune": {
                "max_samples": 4,
                "max_epochs": 1,
                "lr": 1e-2,
                "batch_size": 4,
                "micro_batch": 2,
                "seed": 0,
            },
            "rec_tune": {
                "variants": ["tallrec"],
                "train_domains": ["movie"],
                "ks": [8],
                "seeds": [0],
                "lr": 1e-2,
                "batch_size": 4,
                "micro_batch": 2,
                "max_epochs": 2,
                "patience": 2,
                "valid_size": 8,
            },
            "evaluate": {"test_domains": ["movie"], "test_size": None, "batch_size": 4},
            "baselines": {
                "models": ["sasrec"],
                "domains": ["book"],
                "ks": [16],
                "seeds": [0, 1],
                "epochs": 3,
                "weight_decays": [1e-4, 1e-6],
                "min_count": 1,
                "val_size": None,
                "dim": 16,
                "hidden": 16,
                "batch_size": 32,
                "threads": threads * workers,
                "workers": workers,
            },
        },
    )
    os.environ["TALLREC_PROGRESS"] = "0"
    build_base("tiny", params.model.source)
    alpaca_tune.main(params)
    run = RecRun("tallrec", "movie", 8, 0)
    rec_tune.main(params, *astuple(run))
    evaluate.main(params, *astuple(run))
    evaluate_icl.main(params)
    run_model("sasrec", params)


def _mkparent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def digests(folder: Path) -> dict[str, str]:
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and rel.parts[0] not in RUN_SPECIFIC:
            out[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (model.threads; per baseline worker)")
    ap.add_argument("--workers", type=int, default=1, help="baseline worker processes")
    args = ap.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    folder = args.folder.resolve()
    build(folder, args.threads, args.workers)
    from tallrec import numerics

    print(json.dumps({"numerics": numerics.settings(), "files": digests(folder)}, indent=1))


if __name__ == "__main__":
    main()
