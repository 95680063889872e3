"""A YAML file read into a frozen dataclass tree, strictly, with one-line errors; it knows no schema.

The text is read as DVC reads params files (YAML 1.2's core schema, duplicate keys refused), every key
path gets its line, and `build` turns the parsed mapping into the dataclass `cls`: each key must be a
field and each field a key, with the field's type (bool, int, float, str, Literal, Optional, tuple,
dict, nested dataclasses). A field's metadata may carry `check`: value -> problem text, or None when the
value is fine. The first problem is one `YamlError` line naming the file, the line and the key path.
`set_param` applies a `dvc exp run -S`-style override and `merged` lays nested changes over a mapping.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Callable, Literal, NoReturn

import yaml

from tallrec.io import DataError, read_text


class YamlError(DataError):
    """A bad YAML file or override: one line with the file, the line, the key and the problem."""

    def __init__(self, path: Path | str, key: str, problem: str, line: int | None = None):
        super().__init__(path, f"{key}: {problem}" if key else problem, line)


Fail = Callable[[str, str], NoReturn]  # (key path, problem): raises


# ------------------------------------------------------------------------------------ text to data


class Yaml12Loader(yaml.SafeLoader):
    """params.yaml read as DVC reads it: YAML 1.2's core schema (ruamel). PyYAML reads YAML 1.1, where a
    bare yes/no/on/off is a boolean (`dvc exp run -S` rewrites the file with `yes: Yes.` unquoted), a
    float needs a dot (`1e-4` was a text), 010 is eight and 1:30 is ninety; and it keeps the last of two
    equal keys, which DVC refuses. Here every one of those means what it means to DVC."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


_YAML12_TYPES = ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _YAML12_TYPES]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+.0123456789"),
)


def _yaml12_int(loader, node) -> int:
    text = loader.construct_scalar(node)
    return int(text[2:], 8) if text.startswith("0o") else int(text[2:], 16) if text.startswith("0x") else int(text, 10)


def _yaml12_float(loader, node) -> float:
    text = loader.construct_scalar(node).lower()
    return float(text.replace(".inf", "inf").replace(".nan", "nan"))


Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _yaml12_int)
Yaml12Loader.add_constructor("tag:yaml.org,2002:float", _yaml12_float)


def _key_lines(text: str) -> dict[str, int]:
    """1-based line of every key path ("rec_tune.lr") in a YAML text."""
    lines: dict[str, int] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                path = f"{prefix}.{k.value}" if prefix else str(k.value)
                lines[path] = k.start_mark.line + 1
                walk(v, path)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                lines[f"{prefix}[{i}]"] = v.start_mark.line + 1
                walk(v, f"{prefix}[{i}]")

    walk(yaml.compose(text, Loader=Yaml12Loader), "")
    return lines


def read_yaml_text(path: Path | str, missing: str = "file not found") -> str:
    """A YAML file's text; a missing, unreadable or non-file path, or one not in UTF-8, is one line
    (tallrec.io's checks; an empty file parses to nothing and is refused by whoever expected a mapping)."""
    return read_text(path, missing=missing, empty_ok=True)


def parse_yaml(text: str, path: Path | str) -> tuple[Any, dict[str, int]]:
    """The parsed text and the line of every key path in it; a syntax error is one YamlError."""
    try:
        return yaml.load(text, Loader=Yaml12Loader), _key_lines(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise YamlError(path, "", f"YAML syntax error: {problem}", mark.line + 1 if mark else None) from None


# ------------------------------------------------------------------------------------ data to tree


def failing(path: Path | str, lines: dict[str, int] | None = None) -> Fail:
    """A `fail(key, problem)` that raises a YamlError at the key's line (or its section's, when absent)."""
    lines = lines or {}

    def fail(key: str, problem: str) -> NoReturn:
        where, line = key, lines.get(key)
        while line is None and "." in where:  # a missing key: point at its section
            where = where.rsplit(".", 1)[0]
            line = lines.get(where)
        raise YamlError(path, key, problem, line)

    return fail


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(tp, value, key: str, fail: Fail) -> Any:
    """`value` (as YAML gave it) as type `tp`, or `fail(key, problem)`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        (inner,) = [o for o in options if o is not type(None)]
        return _convert(inner, value, key, fail)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            fail(key, f"{value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            fail(key, f"expected a list, got {value!r}")
        (inner, _) = typing.get_args(tp)
        return tuple(_convert(inner, v, f"{key}[{i}]", fail) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            fail(key, f"expected a mapping, got {value!r}")
        _, inner = typing.get_args(tp)
        return {str(k): _convert(inner, v, f"{key}.{k}", fail) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return build(tp, value, fail, key)
    if tp is bool:
        if not isinstance(value, bool):
            fail(key, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail(key, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail(key, f"expected a number, got {value!r}")
        if not math.isfinite(value):
            fail(key, f"{value} must be a finite number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            fail(key, f"expected a text, got {value!r}")
        return value
    raise TypeError(f"yaml_reader.py: no reader for {_type_name(tp)} ({key})")  # a bug in the schema, not the file


def build(cls, mapping, fail: Fail, prefix: str = ""):
    """The dataclass `cls` from a parsed mapping: every key a field, every field a key, each checked."""
    if not isinstance(mapping, dict):
        fail(prefix, f"expected a mapping of keys, got {mapping!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in mapping:
        if isinstance(key, bool):  # a bare true/false key
            fail(prefix, f"key {key!r} is a boolean in YAML: quote it")
        if key not in known:
            near = difflib.get_close_matches(str(key), known, n=1)
            fail(
                f"{prefix}.{key}" if prefix else str(key),
                "unknown key" + (f" (did you mean {near[0]}?)" if near else ""),
            )
    kwargs = {}
    for name, f in known.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in mapping:
            fail(prefix or "params", f"missing key {name!r}")
        value = _convert(hints[name], mapping[name], key, fail)
        check = f.metadata.get("check")
        problem = check(value) if check else None
        if problem:
            fail(key, f"{mapping[name]!r} {problem}" if not isinstance(mapping[name], (list, dict)) else problem)
        kwargs[name] = value
    return cls(**kwargs)


def as_dict(tree: Any) -> Any:
    """A dataclass tree as plain YAML-able data (tuples as lists), e.g. for fingerprints and metadata."""
    if dataclasses.is_dataclass(tree):
        return {f.name: as_dict(getattr(tree, f.name)) for f in dataclasses.fields(tree)}
    if isinstance(tree, (list, tuple)):
        return [as_dict(v) for v in tree]
    if isinstance(tree, dict):
        return {k: as_dict(v) for k, v in tree.items()}
    return tree


# ---------------------------------------------------------------------------------------- changes


def set_param(raw: dict[str, Any], assignment: str, path: Path | str = "override") -> None:
    """Apply one `key.path=value` override in place (value read as YAML, as `dvc exp run -S` does).
    Only an existing key can be set: a typo is an error, not a new key."""
    key, sep, value = assignment.partition("=")
    if not sep or not key:
        raise YamlError(path, "", f"override {assignment!r}: expected key.path=value")
    *parents, leaf = key.split(".")
    node = raw
    for depth, part in enumerate(parents):
        if not isinstance(node, dict) or part not in node:
            raise YamlError(path, ".".join(parents[: depth + 1]), f"unknown key in override {assignment!r}")
        node = node[part]
    if not isinstance(node, dict) or leaf not in node:
        raise YamlError(path, key, f"unknown key in override {assignment!r}")
    try:
        node[leaf] = yaml.load(value, Loader=Yaml12Loader)
    except yaml.YAMLError:
        raise YamlError(path, key, f"override value {value!r} is not valid YAML") from None


def merged(base: dict, changes: dict) -> dict:
    """`base` with `changes` laid over it, nested mappings key by key; keys only `changes` has come
    last (for `build` to refuse as unknown). Neither argument is modified."""
    return {
        k: merged(v, changes[k]) if isinstance(v, dict) and isinstance(changes.get(k), dict) else changes.get(k, v)
        for k, v in base.items()
    } | {k: v for k, v in changes.items() if k not in base}
