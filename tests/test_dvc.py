"""dvc.yaml tells the truth: every stage depends on the project modules its command runs, nothing is
persisted, every configuration is its own stage instance."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def _code_deps():
    spec = importlib.util.spec_from_file_location("code_deps", ROOT / "scripts" / "code_deps.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# the closure rule lives in scripts/code_deps.py, which also rewrites dvc.yaml's lists (`--write`)
_deps = _code_deps()
module_file, closure, stage_modules = _deps.module_file, _deps.closure, _deps.stage_modules


@pytest.fixture(scope="module")
def stages():
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        return [(s.addressing, s.cmd, [str(Path(d.def_path)) for d in s.deps], s.outs) for s in repo.index.stages]


def test_every_stage_depends_on_the_code_it_runs(stages):
    missing = {}
    for name, cmd, deps, _ in stages:
        covered = lambda f: any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps)  # noqa: E731
        files = sorted(str(module_file(m).relative_to(ROOT)) for m in stage_modules(cmd))
        lacking = [f for f in files if not covered(f)]
        if lacking:
            missing[name] = lacking
    assert not missing, f"dvc.yaml misses code deps: {missing}"


def test_no_stage_depends_on_code_it_does_not_run(stages):
    extra = {}
    for name, cmd, deps, _ in stages:
        files = {str(module_file(m).relative_to(ROOT)) for m in stage_modules(cmd)}
        code = [d for d in deps if d.startswith("src/")]
        unused = [d for d in code if d not in files and not any(f.startswith(d.rstrip("/") + "/") for f in files)]
        if unused:
            extra[name] = unused
    assert not extra, f"dvc.yaml declares code a stage never imports: {extra}"


def test_nothing_is_persisted_and_every_configuration_is_a_stage(stages):
    assert not [o for *_, outs in stages for o in outs if o.persist]
    # DVC saves no run-cache entry for a stage with an uncached output that is not a metric or a plot
    # (but the report's markdown is git-tracked so that it shows on the forge; rebuilding it takes a minute)
    assert not [
        str(o)
        for name, _, _, outs in stages
        for o in outs
        if not o.use_cache and not (o.is_metric or o.is_plot) and name != "report"
    ]
    names = [name for name, *_ in stages]
    assert "rec_tune@tallrec-movie-64-0" in names and "evaluate@tallrec-movie-64-0" in names
    assert "evaluate_icl" in names  # scored once per backbone, reused by every experiment


def test_the_closure_follows_function_level_imports():
    assert "tallrec.train.loop" in closure("tallrec.stages.rec_tune")
    assert "tallrec.scoring" in closure("tallrec.train.loop")  # imported inside train() for validation
    assert "tallrec.serving" not in closure("tallrec.stages.evaluate")


def test_every_stage_runs_the_code_of_its_own_workspace(stages, tmp_path):
    """`dvc exp run` executes stages in a copy of the repository: the code that runs there must be the
    copy's (the code DVC hashed as the stage's deps), not the package installed from this checkout."""
    shutil.copytree(ROOT / "src", tmp_path / "src")
    prefixes = {cmd.split(" -m ")[0] for _, cmd, *_ in stages}
    assert len(prefixes) == 1, prefixes
    probe = f'{prefixes.pop()} -c "import tallrec; print(tallrec.__file__)"'
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # this venv's python
    ran = subprocess.run(
        probe, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    assert Path(ran.stdout.strip()).resolve().is_relative_to(tmp_path.resolve()), ran.stdout


def test_the_report_stage_swaps_in_exactly_the_outputs_dvc_yaml_declares(stages):
    """The report replaces only its own outputs as one unit: a file dvc.yaml declares but the stage
    does not swap would be left from another run, and reports/imported/ (git-tracked) is not one."""
    from tallrec import paths
    from tallrec.stages.report import OUTPUTS

    (outs,) = [outs for name, _, _, outs in stages if name == "report"]
    assert sorted(str(o.def_path) for o in outs) == sorted(str(paths.REPORTS / name) for name in OUTPUTS)


def test_dvc_yaml_spells_the_run_name_as_names_run_name_does(stages):
    """dvc.yaml's matrix templates write `<variant>_<domain>_k<K>_seed<S>` out again (YAML cannot call
    Python): every rec_tune / evaluate instance's outputs are named by tallrec.names.run_name of its own
    command's arguments, so a change to one spelling without the other fails here."""
    from tallrec.names import run_name

    seen = 0
    for name, cmd, _, outs in stages:
        if name.startswith(("rec_tune@", "evaluate@")):
            variant, domain, k, seed = cmd.split()[-4:]
            expected = run_name(variant, domain, int(k), int(seed))
            for out in outs:
                assert expected in str(out.def_path), (name, str(out.def_path), expected)
            seen += 1
    assert seen >= 2
