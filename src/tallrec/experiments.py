"""Bring `dvc exp run` experiments into the report: their git refs stay on the machine that ran them, so
each experiment's LLM summaries and predictions (and any text-aware baseline it ran) are copied, read
through DVC at the experiment's revision, into reports/imported/<experiment>/ with the same layout as the
workspace, plus experiment.json (its name, revision, baseline commit and the params that shape a cell).
That folder is committed; the report stage depends on it."""

from __future__ import annotations

from pathlib import Path

from tallrec import paths
from tallrec.config import Params, parse_yaml, rec_grid, with_changes
from tallrec.io import atomic_dir, read_json, write_json

# experiment.json as import_one writes it; the report reads llm_configs, baselines and baseline_grid.
# A key of an older import may be absent ("?"), but every key present must have its type.
EXPERIMENT_SHAPE = {
    "name?": str,
    "rev?": str,
    "baseline?": str,
    "model?": str,
    "test_size?": (int, None),
    "llm_configs": [str],
    "baselines?": [str],
    "baseline_grid?": {"domains?": [str], "ks?": [int], "seeds?": [int]},
}


def read_experiment(path: Path) -> dict:
    """An imported experiment.json, checked against EXPERIMENT_SHAPE (it may be crafted): one line naming
    the file and the key otherwise."""
    return read_json(path, EXPERIMENT_SHAPE)


def _params_at(rev: str) -> Params:
    """The experiment's params.yaml; keys added to the project after it ran take their defaults."""
    import dvc.api

    origin = f"{paths.PARAMS}@{rev[:7]}"
    raw, lines = parse_yaml(dvc.api.read(str(paths.PARAMS), rev=rev), origin)
    return with_changes(Params(), raw, origin, lines)


def _copy(path: Path, rev: str, dest: Path) -> None:
    import dvc.api

    dest.parent.mkdir(parents=True, exist_ok=True)
    with dvc.api.open(str(path), rev=rev, mode="rb") as f:
        dest.write_bytes(f.read())


def experiments() -> list[tuple[str, str, str]]:
    """(name, revision, baseline commit) of every experiment in this repository."""
    from dvc.repo import Repo

    with Repo(".") as repo:
        listed = repo.experiments.ls(all_commits=True)
    return [(name, rev, baseline) for baseline, exps in listed.items() for name, rev in exps if name]


def import_one(name: str, rev: str, baseline: str, folder: Path = paths.IMPORTED) -> str:
    params = _params_at(rev)
    configs = [run.name for run in rec_grid(params.rec_tune)]
    text_models, b = list(params.baselines.text_models), params.baselines
    with atomic_dir(folder / name) as tmp:
        for config in configs:
            _copy(paths.llm_summary_path(config), rev, tmp / paths.llm_summary_path(config))
            for domain in params.evaluate.test_domains:
                _copy(paths.llm_predictions_path(config, domain), rev, tmp / paths.llm_predictions_path(config, domain))
        for model in text_models:
            for domain in b.domains:
                for k in b.ks:
                    for seed in b.seeds:
                        path = paths.baseline_predictions_path(model, domain, k, seed)
                        _copy(path, rev, tmp / path)
        write_json(
            {
                "name": name,
                "rev": rev,
                "baseline": baseline,
                "model": params.model.name,
                "test_size": params.evaluate.test_size,
                "llm_configs": configs,
                "baselines": text_models,
                "baseline_grid": {"domains": list(b.domains), "ks": list(b.ks), "seeds": list(b.seeds)},
            },
            tmp / "experiment.json",
        )
    return f"{name} ({rev[:7]} on {baseline[:7]}): {', '.join(configs + text_models) or 'nothing to import'}"


def import_experiments(names: list[str] | None = None) -> list[str]:
    """Import the named experiments (all when none is named); an unknown name is one line."""
    found = experiments()
    known = {n for n, *_ in found}
    unknown = [n for n in names or [] if n not in known]
    if unknown:
        raise ValueError(f"no experiment named {unknown[0]!r} (`dvc exp list -A` lists them)")
    return [import_one(n, rev, base) for n, rev, base in found if not names or n in names]
