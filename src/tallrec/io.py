"""Atomic file output and the one error type that the CLI turns into a one-line message."""

from __future__ import annotations

import ctypes
import errno
import glob
import hashlib
import json
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import polars as pl


_UMASK = os.umask(0)
os.umask(_UMASK)


class DataError(Exception):
    """Bad input: the message names the file, the line (when there is one) and the problem."""

    def __init__(self, path: Path | str, problem: str, line: int | None = None):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")


# transformers' loaders: a model folder's own .py (an `auto_map` in its config) could do anything, so
# it is never run and the user is never asked (as with pickles, refused wherever a file could hold one)
NO_REMOTE_CODE = {"trust_remote_code": False}


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    tmp.chmod(0o666 & ~_UMASK)  # mkstemp makes 0600; the renamed file should look like any other output
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _remove(path: Path) -> None:
    """Delete a file, link or folder tree, whichever it is; absent is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


_RENAME_EXCHANGE, _AT_FDCWD = 2, -100  # <linux/fs.h>, <fcntl.h>


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (Linux renameat2 with RENAME_EXCHANGE).

    False where the system, the C library or the file system cannot; other errors are raised.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):  # EPERM: a seccomp filter
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _old_copy(path: Path) -> Path:
    return path.with_name(f".{path.name}.old")


def _restore_old(path: Path) -> None:
    """Finish what a killed two-rename swap of `path` left: put `.<name>.old` back if `path` is
    missing (the old folder is then the only complete one), otherwise delete it."""
    old = _old_copy(path)
    if os.path.lexists(old):
        if not os.path.lexists(path):
            os.replace(old, path)
        else:
            _remove(old)


def remove_stale(path: Path | str) -> None:
    """Clear what killed atomic_dir / atomic_path runs left beside `path`: `.<name>.old` (put back
    first when `path` is missing) and every `.<name>.*.tmp` file or folder.

    Only for a path that no other process is writing at the same time.
    """
    path = Path(path)
    _restore_old(path)
    _remove_temporaries(path)


def _remove_temporaries(path: Path) -> None:
    """The `.<name>.*.tmp` files and folders that killed writers of `path` left (.gitignore covers them)."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        _remove(stale)


@contextmanager
def atomic_dir(path: Path | str) -> Iterator[Path]:
    """Yield a fresh temporary directory; it replaces `path` as a whole only if the block succeeds.

    A kill at any moment leaves the complete old or the complete new folder at `path`. On Linux the
    new folder and the old one are swapped in one step (renameat2 RENAME_EXCHANGE), so `path` is
    never missing; the old copy, now under the temporary name, is deleted after (a kill first leaves
    it for remove_stale). Where the system cannot swap, the old folder is renamed to `.<name>.old`
    and then the new one to `path`; a kill between the two renames leaves `path` missing, and the
    next atomic_dir or remove_stale on it renames `.<name>.old` back before anything else, so that
    run starts from the complete old folder, deterministically.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _restore_old(path)
    _remove_temporaries(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    tmp.chmod(0o777 & ~_UMASK)  # mkdtemp makes 0700; the renamed folder should look like any other output
    try:
        yield tmp
        if not (path.is_dir() and not path.is_symlink() and _exchange(tmp, path)):
            old = _old_copy(path)
            if os.path.lexists(path):
                _remove(old)
                os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
    finally:
        _remove(tmp)  # after a swap: the old folder


def input_file(path: Path | str, missing: str = "file not found") -> Path:
    """`path`, checked as a file to read: it exists, is a regular file (a folder, or a FIFO whose read
    would wait for a writer forever, is not) and can be read; else a one-line DataError (`missing`: what
    to say when it does not exist). The one home of this check: every reader of a user's file calls it."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, missing)
    if path.is_dir():
        raise DataError(path, "is a folder, not a file")
    if not path.is_file():
        raise DataError(path, "not a regular file")
    if not os.access(path, os.R_OK):
        raise DataError(path, "cannot be read (no read permission)")
    return path


def read_bytes(path: Path | str, missing: str = "file not found") -> bytes:
    """A whole input file's bytes, after input_file's checks (an error while reading is one line too)."""
    path = input_file(path, missing)
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(path, f"cannot be read ({e.strerror})") from None


def read_text(
    path: Path | str, encoding: str = "utf-8", missing: str = "file not found", empty_ok: bool = False
) -> str:
    """A whole input file as text; a missing, empty (unless `empty_ok`) or wrongly encoded file is a
    one-line DataError."""
    data = read_bytes(path, missing)
    if not data.strip() and not empty_ok:
        raise DataError(path, "file is empty")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(path, f"not valid {encoding} (byte 0x{data[e.start]:02x})", line) from None


def read_json(path: Path | str, shape: Any = None) -> Any:
    """A UTF-8 JSON file; a syntax error names the line, and a value not of `shape` (see `check_shape`)
    names the key. Every JSON a user or an import hands the project is read through here with a shape."""
    try:
        value = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(path, f"invalid JSON ({e.msg})", e.lineno) from None
    except RecursionError:
        raise DataError(path, "invalid JSON (nested too deeply)") from None
    if shape is not None:
        check_shape(value, shape, path)
    return value


_JSON_NAMES = {
    dict: "an object",
    list: "a list",
    str: "a text",
    int: "an integer",
    float: "a number",
    bool: "true or false",
}


def _shape_name(shape: Any) -> str:
    if isinstance(shape, tuple):
        return " or ".join("null" if s is None else _shape_name(s) for s in shape)
    if isinstance(shape, list):
        return "a list"  # a wrong item is named by its own index
    if isinstance(shape, dict):
        required = [k for k in shape if not k.endswith("?")]
        return f"an object with {', '.join(required)}" if required else "an object"
    return _JSON_NAMES[shape]


def _fits(value: Any, shape: Any) -> bool:
    """Whether `value` has `shape`'s outer type (bool is no number here, an integer is a float)."""
    if isinstance(shape, tuple):
        return any(value is None if s is None else _fits(value, s) for s in shape)
    if isinstance(shape, (list, dict)):
        return isinstance(value, type(shape))
    if shape is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, shape) and (shape is bool or not isinstance(value, bool))


def check_shape(value: Any, shape: Any, path: Path | str, key: str = "") -> None:
    """`value` (as JSON gave it) against `shape`: a type (dict, list, str, int, float, bool), a tuple
    of them (None for null), [shape] (a list of those) or {key: shape} (an object with those keys, a key
    ending in "?" may be absent, other keys are allowed). The first mismatch is one DataError naming the
    file and the key path."""
    where = f"{key}: " if key else ""
    if not _fits(value, shape):
        raise DataError(path, f"{where}expected {_shape_name(shape)}, got {_short(value)}")
    if isinstance(shape, list) and shape:
        for i, item in enumerate(value):
            check_shape(item, shape[0], path, f"{key}[{i}]")
    elif isinstance(shape, dict):
        for name, inner in shape.items():
            optional, name = name.endswith("?"), name.removesuffix("?")
            sub = f"{key}.{name}" if key else name
            if name not in value:
                if optional:
                    continue
                raise DataError(path, f"missing key {sub!r}")
            check_shape(value[name], inner, path, sub)


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def sha256_of(*files: Path | str) -> str:
    """sha256 of the files' bytes joined in order (one file, or the chunks of a split package)."""
    h = hashlib.sha256()
    for path in files:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def write_json(obj: Any, path: Path | str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


PREDICTION_COLUMNS = ("domain", "user", "target_item_id", "label", "score")  # every predictions file, LLM or baseline


def write_predictions(rows: pl.DataFrame, scores, path: Path | str) -> None:
    """A predictions file: the scored rows' keys and labels, and one float64 score a row."""
    write_parquet(rows.select(*PREDICTION_COLUMNS[:-1]).with_columns(score=pl.Series(scores, dtype=pl.Float64)), path)


def write_parquet(df: pl.DataFrame, path: Path | str) -> None:
    # no statistics and a fixed compression keep the bytes identical for identical rows
    with atomic_path(path) as tmp:
        df.write_parquet(tmp, compression="zstd", statistics=False)
