"""summarize: the experiment's headline numbers, under the same keys in every experiment, so that
`dvc exp show` lines experiments up as rows (K, train domain, variant, backbone are params columns):

- metrics/llm.json: {"icl": {<test domain>_auc}, <variant>: {<test domain>_auc}}, each variant's AUC the
  mean over this experiment's configurations (one, in the documented grid; see metrics/llm/<config>.json);
- metrics/baselines.json: {<model>: {<domain>_auc, <domain>_std}}: mean and std over the seeds at this
  experiment's K (rec_tune.ks); every K and seed is in metrics/baselines/<model>.json.
"""

from __future__ import annotations

import math

import numpy as np

from tallrec import paths
from tallrec.config import Params, rec_grid
from tallrec.io import DataError, read_json, write_json


def _number(x: float) -> float | None:
    return None if x is None or math.isnan(x) else round(float(x), 6)


def llm_summary(params: Params) -> dict[str, dict[str, float | None]]:
    # the configurations from the grid itself (tallrec.config), not tallrec.evaluation: a change to the
    # scoring code does not re-run this stage
    by_row: dict[str, list[dict[str, float]]] = {}
    for name, variant in [("icl", "icl")] + [(run.name, run.variant) for run in rec_grid(params.rec_tune)]:
        path = paths.llm_summary_path(name)
        if not path.exists():
            raise DataError(path, "not evaluated (run the evaluate stages first)")
        by_row.setdefault(variant, []).append(read_json(path)["auc"])
    return {
        row: {f"{d}_auc": _number(np.mean([r[d] for r in runs])) for d in params.evaluate.test_domains}
        for row, runs in by_row.items()
    }


def baselines_summary(params: Params) -> dict[str, dict[str, float | None]]:
    ks = [k for k in params.rec_tune.ks if k in params.baselines.ks]
    out = {}
    for model in params.baselines.models + params.baselines.text_models:
        detail = read_json(paths.baseline_metrics_path(model))
        out[model] = {}
        for domain in params.baselines.domains:
            aucs = [a for k in ks for a in detail[domain][f"k{k}"]["per_seed"].values()]
            out[model][f"{domain}_auc"] = _number(np.mean(aucs)) if aucs else None
            out[model][f"{domain}_std"] = _number(np.std(aucs, ddof=1)) if len(aucs) > 1 else None
    return out


def main(params: Params) -> str:
    write_json(llm_summary(params), paths.LLM_METRICS)
    write_json(baselines_summary(params), paths.BASELINE_METRICS)
    return f"wrote {paths.LLM_METRICS} and {paths.BASELINE_METRICS}"


if __name__ == "__main__":
    from tallrec.stages import run

    run(main)
