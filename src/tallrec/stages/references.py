"""references: the parameter-free scorers (tallrec.references) on every test set, for every K-shot draw
the baselines see, written as predictions in the baselines' format so the report reads them the same way."""

from __future__ import annotations

import polars as pl

from tallrec import paths
from tallrec.config import Params
from tallrec.io import DataError, write_predictions
from tallrec.metrics import auc
from tallrec.references import READS_THE_DRAW, REFERENCES, score


def main(params: Params) -> str:
    lines = []
    for domain in params.evaluate.test_domains:
        test_path = paths.split_path(domain, "test")
        if not test_path.exists():
            raise DataError(test_path, f"test split not found (run `tallrec prepare {domain}`)")
        test = pl.read_parquet(test_path)
        for k in params.sample.ks:
            for seed in params.sample.seeds:
                shots = pl.read_parquet(paths.shot_path(domain, k, seed))
                for name in (n for n in REFERENCES if n in READS_THE_DRAW or seed == params.sample.seeds[0]):
                    scores = score(name, test, shots)
                    write_predictions(test, scores, paths.reference_predictions_path(name, domain, k, seed))
                    if seed == params.sample.seeds[0]:
                        lines.append(
                            f"{name} {domain} K={k} seed {seed}: AUC {auc(test['label'].to_numpy(), scores):.4f}"
                        )
    return "\n".join(lines)


if __name__ == "__main__":
    from tallrec.stages import run

    run(main)
