"""evaluate: one rec-tuned configuration on every test domain -> metrics/llm/<config>.json (AUC, n, run
metadata) and metrics/predictions/llm/<config>/<test domain>.parquet."""

from __future__ import annotations

from tallrec import paths
from tallrec.config import Params


def main(params: Params, variant: str, domain: str, k: int, seed: int) -> str:
    from tallrec.evaluation import EvalConfig, evaluate_one
    from tallrec.runtime import configure_threads
    from tallrec.config import RecRun

    configure_threads(params.model.threads)
    run = RecRun(variant, domain, k, seed)
    result = evaluate_one(
        EvalConfig(run.name, paths.rec_adapter_dir(params.model.name, run.name), variant, domain, k, seed), params
    )
    return f"{run.name}: " + ", ".join(f"{d} AUC {v:.4f}" for d, v in result["auc"].items())


if __name__ == "__main__":
    from tallrec.stages import run

    run(main, str, str, int, int)
