"""baselines: one traditional recommender over every domain x K x seed; predictions and a detail JSON."""

from __future__ import annotations

from tallrec.config import Params


def main(params: Params, model: str) -> str:
    from tallrec.baselines.run import run_model

    summary = run_model(model, params)
    return "\n".join(
        f"{model} {domain}: " + ", ".join(f"{k} {v['auc_mean']:.4f}±{v['auc_std']:.4f}" for k, v in by_k.items())
        for domain, by_k in summary.items()
    )


if __name__ == "__main__":
    from tallrec.stages import run

    run(main, str)
