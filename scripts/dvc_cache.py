"""A DVC cache or store as scripts/pull.py and scripts/verify.py read it: objects under files/md5/<2>/<rest>,
a folder output's file list in its `.dir` manifest."""

from __future__ import annotations

import json
from pathlib import Path


def object_path(cache: Path, md5: str) -> Path:
    return cache / "files" / "md5" / md5[:2] / md5[2:]


def read_manifest(path: Path) -> dict[str, str]:
    """{relative path: md5} of a `.dir` manifest file."""
    return {e["relpath"]: e["md5"] for e in json.loads(path.read_text())}


def manifest(md5: str, caches: list[Path]) -> dict[str, str] | None:
    """The file list of a folder output from the first cache that holds it (None when none does)."""
    for cache in caches:
        path = object_path(cache, md5)
        if path.exists():
            return read_manifest(path)
    return None
