"""dvc.yaml tells the truth: every stage depends on the project modules its command runs, nothing is
persisted, every configuration is its own stage instance."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def module_file(module: str) -> Path | None:
    base = SRC / Path(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.exists():
            return path
    return None


def direct_imports(module: str) -> set[str]:
    """The tallrec modules a module's file imports anywhere (function-local imports too: they run when
    the function does), with the packages each import runs."""
    found = set()
    for node in ast.walk(ast.parse(module_file(module).read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] == "tallrec" and module_file(name):
                parts = name.split(".")
                found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return found


def closure(*modules: str) -> set[str]:
    """Every module that runs when `modules` are imported: their imports, transitively, and the packages
    each one sits in."""
    seen, todo = set(), list(modules)
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            parts = m.split(".")
            todo += [".".join(parts[:i]) for i in range(1, len(parts))] + sorted(direct_imports(m) - seen)
    return seen


def stage_modules(cmd: str) -> set[str]:
    """The project modules a stage command runs: `PYTHONPATH=src python -m tallrec.stages.X ARGS`; a baseline's
    network is imported by name (importlib), so its module is added from the argument."""
    match = re.fullmatch(r"PYTHONPATH=src python -m (tallrec\.stages\.\w+)((?: \S+)*)", cmd.strip())
    assert match, f"stage command {cmd!r} is not `PYTHONPATH=src python -m tallrec.stages.<stage> ...`"
    entry, args = match.group(1), match.group(2).split()
    extra = [f"tallrec.baselines.{args[0]}"] if entry.endswith(".baseline") else []
    return closure(entry, *extra)


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
    assert "tallrec.tuning" in closure("tallrec.stages.rec_tune")
    assert "tallrec.scoring" in closure("tallrec.tuning")  # imported inside train() for validation
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
