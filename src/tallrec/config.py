"""params.yaml, read once: stages receive the whole dict and pick their own section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tallrec.io import DataError
from tallrec.paths import PARAMS


def load_params(path: Path | str = PARAMS) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise DataError(path, "params file not found (run from the project root)")
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(params, dict):
        raise DataError(path, "expected a mapping at the top level")
    return params


def set_param(params: dict[str, Any], assignment: str) -> None:
    """Apply one `key.path=value` override in place, the value read as YAML (as `dvc exp run -S`)."""
    key, sep, value = assignment.partition("=")
    if not sep or not key:
        raise ValueError(f"override {assignment!r}: expected key.path=value")
    *parents, leaf = key.split(".")
    node = params
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = yaml.safe_load(value)
