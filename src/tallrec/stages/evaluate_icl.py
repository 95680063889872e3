"""evaluate_icl: the untuned backbone (in-context learning, the paper's ICL row) on every test domain.
Its own stage: it depends on no tuning params, so every experiment reuses it from DVC's run-cache."""

from __future__ import annotations

from tallrec.config import Params


def main(params: Params) -> str:
    from tallrec.evaluation import EvalConfig, evaluate_one
    from tallrec.runtime import configure_threads

    configure_threads(params.model.threads)
    result = evaluate_one(EvalConfig("icl", None, "icl"), params)
    return "icl: " + ", ".join(f"{d} AUC {v:.4f}" for d, v in result["auc"].items())


if __name__ == "__main__":
    from tallrec.stages import run

    run(main)
