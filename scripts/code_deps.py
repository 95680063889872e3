"""The project modules a DVC stage's command runs (an AST closure of its imports), and `--write`, which
sets every stage's `src/` deps in dvc.yaml to exactly those files.

`tests/test_dvc.py` checks dvc.yaml against `stage_files`; after moving code between modules, run
`python scripts/code_deps.py --write` instead of editing the lists by hand. A template stage (foreach /
matrix) lists the files every instance runs, plus its `${item}` lines for the per-instance network.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
COMMAND = re.compile(r"PYTHONPATH=src python -m (tallrec\.stages\.\w+)((?: \S+)*)")


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
    match = COMMAND.fullmatch(cmd.strip())
    if not match:
        raise ValueError(f"stage command {cmd!r} is not `PYTHONPATH=src python -m tallrec.stages.<stage> ...`")
    entry, args = match.group(1), match.group(2).split()
    extra = [f"tallrec.baselines.{args[0]}"] if entry.endswith(".baseline") else []
    return closure(entry, *extra)


def stage_files(cmd: str) -> set[str]:
    return {str(module_file(m).relative_to(ROOT)) for m in stage_modules(cmd)}


def write() -> list[str]:
    """Rewrite the src deps of every stage block in dvc.yaml; returns the blocks that changed."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        instances: dict[str, list[tuple[str, str | None]]] = {}
        for stage in repo.index.stages:
            template, _, _ = stage.addressing.partition("@")
            item = COMMAND.fullmatch(stage.cmd.strip()).group(2).split()
            instances.setdefault(template, []).append((stage.cmd, item[0] if item else None))
    lines = (ROOT / "dvc.yaml").read_text().splitlines(keepends=True)
    changed, out, i, template = [], [], 0, None
    while i < len(lines):
        line = lines[i]
        name = re.fullmatch(r"  (\w+):\s*(#.*)?\n", line)
        if name:
            template = name.group(1)
        out.append(line)
        i += 1
        if re.fullmatch(r"\s+deps:\n", line) and template in instances:
            start = i
            while i < len(lines) and re.fullmatch(r"\s+- src/tallrec/\S+\n", lines[i]):
                i += 1
            old = lines[start:i]
            indent = re.match(r"\s*", old[0] if old else lines[i]).group(0)
            per_item = [entry for entry in old if "${" in entry]
            closures = [stage_files(cmd) for cmd, _ in instances[template]]
            own = {f"src/tallrec/baselines/{item}.py" for _, item in instances[template] if item} if per_item else set()
            files = set.union(*closures)
            files = {f for f in files if f not in own or all(f in c for c in closures)}
            new = sorted([f"{indent}- {f}\n" for f in files] + per_item, key=lambda s: s.strip().replace("${", "~"))
            if new != old:
                changed.append(template)
            out += new
    (ROOT / "dvc.yaml").write_text("".join(out))
    return changed


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite dvc.yaml's src deps")
    if parser.parse_args().write:
        print("changed:", ", ".join(write()) or "nothing")
    else:
        sys.exit(parser.print_help())
