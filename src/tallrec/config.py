"""params.yaml as one typed tree: the only home of every default, type and range.

`load_params` reads the file and returns a frozen `Params`. Every key of the file must be one the tree
knows and every key the tree knows must be in the file (DVC tracks them there), with the right type and
in range; anything else is one `ParamsError` line naming the file, the line, the key and the problem,
raised before any stage does work. `Params()` holds the defaults, which are also what the committed
params.yaml says (a test keeps the two equal). `set_param` applies a `dvc exp run -S`-style override to
an existing key only.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from tallrec.catalog import CATALOG
from tallrec.io import DataError
from tallrec.names import (
    DOMAINS,
    ID_BASELINES,
    SHOT_DOMAINS,
    VARIANTS,
    Domain,
    IdBaseline,
    ShotDomain,
    TextBaseline,
    Variant,
    run_name,
)
from tallrec.paths import PARAMS


class ParamsError(DataError):
    """A bad params file or override: one line with the file, the line, the key and the problem."""

    def __init__(self, path: Path | str, key: str, problem: str, line: int | None = None):
        super().__init__(path, f"{key}: {problem}" if key else problem, line)


# ------------------------------------------------------------------------------------------ checks
# A field's metadata may carry `check`: value -> problem text, or None when the value is fine.


def _positive(v) -> str | None:
    return None if v > 0 else "must be > 0"


def _at_least(n):
    return lambda v: None if v >= n else f"must be >= {n}"


def _each_at_least(n):
    return lambda vs: next((f"every value must be >= {n}, not {v}" for v in vs if v < n), None)


def _optional_positive(v) -> str | None:
    return None if v is None or v > 0 else "must be > 0 (or null)"


def _between(lo, hi):
    """A range whose upper end only a mistake passes (a trillion bootstrap resamples hung with 4.7 GB)."""
    return lambda v: None if v is None or lo <= v <= hi else (f"must be >= {lo}" if v < lo else f"must be <= {hi}")


def _device(v) -> str | None:
    return None if v is None or re.fullmatch(r"cpu|cuda(:\d+)?", v) else "must be null, cpu, cuda or cuda:<index>"


def _template(*fields: str):
    """A str.format template that names only `fields` (an unknown one failed deep inside prepare)."""
    import string

    def check(text: str) -> str | None:
        try:
            used = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
        except ValueError as e:
            return f"is not a valid template ({e}); write a literal brace as {{{{ or }}}}"
        unknown = sorted(used - set(fields))
        allowed = ", ".join(f"{{{f}}}" for f in sorted(fields))
        return f"unknown field {{{unknown[0]}}}: it may use {allowed}" if unknown else None

    return check


def _non_empty(v) -> str | None:
    return None if len(v) else "must not be empty"


def _fractions(v) -> str | None:
    if len(v) != 3 or any(x < 0 for x in v) or abs(sum(v) - 1) > 1e-9:
        return "must be three non-negative fractions (train, valid, test) that sum to 1"
    return None


def _all(*checks):
    def check(v):
        return next((p for p in (c(v) for c in checks) if p), None)

    return check


def _p(default, check=None, *, factory: bool = False):
    """A field with its default (and an optional check)."""
    meta = {"check": check} if check else {}
    if factory:
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


def _ks(*default: int):
    return _p(default, _all(_non_empty, _each_at_least(1)))


def _seeds(*default: int):
    return _p(default, _non_empty)


# --------------------------------------------------------------------------------------- the tree


@dataclass(frozen=True)
class MovieData:
    history_len: int = _p(10, _at_least(1))
    keep_last: int = _p(10000, _at_least(1))  # the released data keeps the last 10,000 windows
    split: tuple[float, ...] = _p((0.8, 0.1, 0.1), _fractions)  # train / valid / test, in order
    like_threshold: int = 3  # like = rating > 3


@dataclass(frozen=True)
class BookData:
    history_len: int = _p(10, _at_least(1))
    min_ratings: int = _p(4, _at_least(2))  # users with more than 3 rated books
    split: tuple[float, ...] = _p((0.8, 0.1, 0.1), _fractions)
    like_threshold: int = 5  # like = rating > 5
    drop_implicit_zeros: bool = False  # the released data counts a 0 (implicit feedback) as a dislike
    seed: int = 0


@dataclass(frozen=True)
class DataParams:
    mirror: str = "../shared/datasets"
    movie: MovieData = _p(MovieData, factory=True)
    book: BookData = _p(BookData, factory=True)

    def history_len(self, domain: str) -> int:
        return getattr(self, domain).history_len


@dataclass(frozen=True)
class ItemTemplate:
    noun: str
    text: str


def _default_items() -> dict[str, ItemTemplate]:
    return {"movie": ItemTemplate("movie", '"{title}"'), "book": ItemTemplate("book", '"{title}" written by {author}')}


ITEM_FIELDS = {"movie": ("title",), "book": ("title", "author")}  # what data.py fills an item's text with


def _items_check(items) -> str | None:
    missing = [d for d in ITEM_FIELDS if d not in items]
    return f"needs a template for {missing[0]}" if missing else None


@dataclass(frozen=True)
class PromptParams:
    """The recommendation prompt; reproduces the released TALLRec data character for character."""

    instruction: str = _p(
        "Given the user's preference and unpreference, identify whether the user will like the "
        'target {noun} by answering "Yes." or "No.".',
        _template("noun"),
    )
    input: str = _p(
        "User Preference: {liked}\nUser Unpreference: {disliked}\n"
        "Whether the user will like the target {noun} {target}?",
        _template("liked", "disliked", "noun", "target"),
    )
    separator: str = ", "
    yes: str = _p("Yes.", _non_empty)
    no: str = _p("No.", _non_empty)
    items: dict[str, ItemTemplate] = _p(_default_items, _items_check, factory=True)


@dataclass(frozen=True)
class SampleParams:
    domains: tuple[ShotDomain, ...] = _p(SHOT_DOMAINS, _non_empty)
    ks: tuple[int, ...] = _ks(16, 64, 256)
    seeds: tuple[int, ...] = _seeds(0, 1, 2, 3, 4)


@dataclass(frozen=True)
class BaselineParams:
    models: tuple[IdBaseline, ...] = ID_BASELINES
    text_models: tuple[TextBaseline, ...] = ()
    domains: tuple[Domain, ...] = _p(DOMAINS, _non_empty)
    ks: tuple[int, ...] = _ks(16, 64, 256)
    seeds: tuple[int, ...] = _seeds(0, 1, 2, 3, 4)
    lr: float = _p(1e-3, _positive)
    weight_decays: tuple[float, ...] = _p((1e-3, 1e-4, 1e-5, 1e-6, 1e-7), _all(_non_empty, _each_at_least(0)))
    epochs: int = _p(20, _at_least(1))
    patience: int = _p(2, _at_least(1))
    batch_size: int = _p(32, _at_least(1))
    eval_batch_size: int = _p(512, _at_least(1))
    val_size: int | None = _p(200, _optional_positive)
    min_count: int = _p(2, _at_least(1))
    dim: int = _p(64, _at_least(1))
    hidden: int = _p(64, _at_least(1))
    layers: int = _p(1, _at_least(1))
    dropout: float = _p(0.2, lambda v: None if 0 <= v < 1 else "must be in [0, 1)")
    history_labels: bool = True
    dros_alpha: float = _p(1.0, _at_least(0))
    dros_beta: float = _p(1.0, _positive)
    bert_layers: int = _p(4, _at_least(1))
    bert_hidden: int = _p(512, _at_least(1))
    bert_bf16: bool = False  # bf16 autocast (text encoder, big GRU): bytes then follow the CPU
    sasrec_blocks: int = _p(2, _at_least(1))
    sasrec_heads: int = _p(1, _at_least(1))
    caser_h_filters: int = _p(16, _at_least(1))
    caser_v_filters: int = _p(4, _at_least(1))
    text_encoder: Literal["all-MiniLM-L6-v2"] = "all-MiniLM-L6-v2"
    threads: int = _p(2, _between(1, 1024))
    workers: int = _p(2, _between(1, 256))


@dataclass(frozen=True)
class ModelParams:
    name: str = _p("smollm2-135m", _non_empty)
    source: str | None = None  # a local Hugging Face folder or a hub id, for a name outside the catalog
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = "fp32"  # canonical; auto/bf16/fp16 follow the machine
    quantize: Literal["none", "8bit", "4bit"] = "none"
    max_length: int = _p(512, _at_least(8))
    device: str | None = _p(None, _device)  # null = cuda when present, else cpu
    threads: int | None = _p(2, _between(1, 1024))  # torch threads, fixed (null = every core: machine-dependent)


@dataclass(frozen=True)
class LoraParams:
    r: int = _p(8, _between(1, 1024))
    alpha: int = _p(16, _positive)
    dropout: float = _p(0.05, lambda v: None if 0 <= v < 1 else "must be in [0, 1)")
    target_modules: tuple[str, ...] = _p(("q_proj", "v_proj"), _non_empty)


def _no_validation(v) -> str | None:
    return None if v is None else "must be null: this section has no validation split"


@dataclass(frozen=True)
class TrainingParams:
    """The settings of the LoRA training loop (tallrec.train), shared by alpaca_tune and rec_tune."""

    lr: float = _p(3e-4, _positive)  # AdamW learning rate, constant after the warm-up
    batch_size: int = _p(16, _at_least(1))  # effective batch: one optimizer step per batch_size examples
    micro_batch: int = _p(2, _at_least(1))  # rows per forward pass; their gradients add up to the batch's
    max_epochs: int = _p(1, _at_least(1))  # at most; early stopping (patience) may end sooner
    train_on_inputs: bool = False  # the loss covers the prompt tokens too (the original), not only the answer
    warmup_steps: int = _p(0, _at_least(0))  # linear warm-up steps (0 = none)
    weight_decay: float = _p(0.0, _at_least(0))
    max_grad_norm: float | None = _p(1.0, _optional_positive)  # gradient clipping (null = none)
    checkpoint_steps: int = _p(0, _at_least(0))  # extra mid-epoch checkpoints every N steps (0 = per epoch)
    # validation after each epoch: only a section with a validation split sets these (rec_tune);
    # alpaca_tune has none, so there they stay null rather than a setting that would do nothing
    patience: int | None = _p(None, _no_validation)  # epochs without a better validation AUC before stopping
    eval_batch_size: int | None = _p(None, _no_validation)  # prompts per forward pass while validating


@dataclass(frozen=True)
class AlpacaTuneParams(TrainingParams):
    max_samples: int | None = _p(128, _optional_positive)  # a seeded subset (null = all 52,002)
    max_length: int = _p(256, _at_least(8))
    seed: int = 0


@dataclass(frozen=True)
class RecTuneParams(TrainingParams):
    variants: tuple[Variant, ...] = _p(("tallrec",), _non_empty)
    train_domains: tuple[ShotDomain, ...] = _p(("movie",), _non_empty)
    ks: tuple[int, ...] = _ks(64)
    seeds: tuple[int, ...] = _seeds(0)
    lr: float = _p(1e-3, _positive)
    batch_size: int = _p(8, _at_least(1))
    max_epochs: int = _p(3, _at_least(1))
    patience: int = _p(2, _at_least(1))
    valid_size: int | None = _p(64, _optional_positive)
    eval_batch_size: int = _p(8, _at_least(1))


@dataclass(frozen=True)
class RecRun:
    """One rec-tuning configuration of the grid. Its name carries every coordinate explicitly."""

    variant: str
    train_domain: str
    k: int
    seed: int

    def __post_init__(self) -> None:
        # a stage module's arguments become folder names: only the grid's own values are accepted
        for what, value, choices in (
            ("variant", self.variant, VARIANTS),
            ("train domain", self.train_domain, SHOT_DOMAINS),
        ):
            if value not in choices:
                raise ValueError(f"{what} {value!r} is not one of {', '.join(choices)}")
        for what, value, low in (("K", self.k, 1), ("seed", self.seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{what} must be >= {low}, not {value!r}")

    @property
    def name(self) -> str:
        return run_name(self.variant, self.train_domain, self.k, self.seed)


def rec_grid(section: RecTuneParams) -> list[RecRun]:
    """Every configuration, in dvc.yaml's matrix order (variant, train domain, K, seed)."""
    return [
        RecRun(v, d, k, s)
        for v in section.variants
        for d in section.train_domains
        for k in section.ks
        for s in section.seeds
    ]


@dataclass(frozen=True)
class EvaluateParams:
    test_domains: tuple[Domain, ...] = _p(DOMAINS, _non_empty)
    test_size: int | None = _p(None, _optional_positive)  # null = the full test sets
    batch_size: int = _p(8, _at_least(1))


@dataclass(frozen=True)
class ReportParams:
    bootstrap: int = _p(1000, _between(1, 100_000))  # resamples of the test users for confidence intervals and p-values
    seed: int = 0  # of those resamples


@dataclass(frozen=True)
class Params:
    data: DataParams = _p(DataParams, factory=True)
    prompt: PromptParams = _p(PromptParams, factory=True)
    sample: SampleParams = _p(SampleParams, factory=True)
    baselines: BaselineParams = _p(BaselineParams, factory=True)
    model: ModelParams = _p(ModelParams, factory=True)
    lora: LoraParams = _p(LoraParams, factory=True)
    alpaca_tune: AlpacaTuneParams = _p(AlpacaTuneParams, factory=True)
    rec_tune: RecTuneParams = _p(RecTuneParams, factory=True)
    evaluate: EvaluateParams = _p(EvaluateParams, factory=True)
    report: ReportParams = _p(ReportParams, factory=True)


def _cross_checks(p: Params) -> list[tuple[str, str]]:
    """Rules between keys: (key, problem) for each one broken."""
    problems = []
    for domain, fields in ITEM_FIELDS.items():
        problem = _template(*fields)(p.prompt.items[domain].text)
        if problem:
            problems.append((f"prompt.items.{domain}.text", problem))
    for name in ("alpaca_tune", "rec_tune"):
        section = getattr(p, name)
        if section.batch_size % section.micro_batch:
            problems.append(
                (f"{name}.micro_batch", f"{section.micro_batch} does not divide {name}.batch_size {section.batch_size}")
            )
    if p.model.name not in CATALOG and p.model.source is None:
        problems.append(
            (
                "model.name",
                f"{p.model.name!r} is not in the catalog ({', '.join(CATALOG)}); "
                "a backbone outside it needs model.source (a local folder or a hub id)",
            )
        )
    for domain in p.rec_tune.train_domains:
        if domain not in p.sample.domains:
            problems.append(("rec_tune.train_domains", f"{domain!r} is not drawn by sample.domains"))
    for key, wanted, have in (
        ("rec_tune.ks", p.rec_tune.ks, p.sample.ks),
        ("rec_tune.seeds", p.rec_tune.seeds, p.sample.seeds),
        ("baselines.ks", p.baselines.ks, p.sample.ks),
        ("baselines.seeds", p.baselines.seeds, p.sample.seeds),
    ):
        extra = [v for v in wanted if v not in have]
        if extra:
            problems.append((key, f"{extra[0]} is not drawn by sample.{key.split('.')[1]}"))
    return problems


# ------------------------------------------------------------------------------------ the reader


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(tp, value, key: str, fail) -> Any:
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
        return _build(tp, value, key, fail)
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
    raise TypeError(f"config.py: no reader for {_type_name(tp)} ({key})")  # a bug in this file, not in params


def _build(cls, mapping, prefix: str, fail):
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


def params_from_dict(raw: Any, path: Path | str = PARAMS, lines: dict[str, int] | None = None) -> Params:
    """The typed tree of a parsed params mapping; the first problem is one ParamsError."""
    lines = lines or {}

    def fail(key: str, problem: str):
        where, line = key, lines.get(key)
        while line is None and "." in where:  # a missing key: point at its section
            where = where.rsplit(".", 1)[0]
            line = lines.get(where)
        raise ParamsError(path, key, problem, line)

    if not isinstance(raw, dict):
        raise ParamsError(path, "", "expected a mapping of sections at the top level")
    params = _build(Params, raw, "", fail)
    for key, problem in _cross_checks(params):
        fail(key, problem)
    return params


def read_params_text(path: Path | str) -> str:
    path = Path(path)
    if not path.exists():
        raise DataError(path, "params file not found (run from the project root, or pass --params)")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(path, f"not valid utf-8 (byte 0x{e.object[e.start]:02x})") from None


def parse_yaml(text: str, path: Path | str) -> tuple[Any, dict[str, int]]:
    try:
        return yaml.load(text, Loader=Yaml12Loader), _key_lines(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ParamsError(path, "", f"YAML syntax error: {problem}", mark.line + 1 if mark else None) from None


def load_params(path: Path | str = PARAMS, overrides: list[str] | tuple[str, ...] = ()) -> Params:
    """params.yaml (plus `key=value` overrides) as the checked, typed tree."""
    raw, lines = parse_yaml(read_params_text(path), path)
    for assignment in overrides:
        set_param(raw, assignment, path)
    return params_from_dict(raw, path, lines)


def set_param(raw: dict[str, Any], assignment: str, path: Path | str = "override") -> None:
    """Apply one `key.path=value` override in place (value read as YAML, as `dvc exp run -S` does).
    Only an existing key can be set: a typo is an error, not a new key."""
    key, sep, value = assignment.partition("=")
    if not sep or not key:
        raise ParamsError(path, "", f"override {assignment!r}: expected key.path=value")
    *parents, leaf = key.split(".")
    node = raw
    for depth, part in enumerate(parents):
        if not isinstance(node, dict) or part not in node:
            raise ParamsError(path, ".".join(parents[: depth + 1]), f"unknown key in override {assignment!r}")
        node = node[part]
    if not isinstance(node, dict) or leaf not in node:
        raise ParamsError(path, key, f"unknown key in override {assignment!r}")
    try:
        node[leaf] = yaml.load(value, Loader=Yaml12Loader)
    except yaml.YAMLError:
        raise ParamsError(path, key, f"override value {value!r} is not valid YAML") from None


def as_dict(params: Any) -> Any:
    """The tree as plain YAML-able data (tuples as lists), e.g. for fingerprints and metadata."""
    if dataclasses.is_dataclass(params):
        return {f.name: as_dict(getattr(params, f.name)) for f in dataclasses.fields(params)}
    if isinstance(params, (list, tuple)):
        return [as_dict(v) for v in params]
    if isinstance(params, dict):
        return {k: as_dict(v) for k, v in params.items()}
    return params


def with_changes(params: Params, changes: dict[str, Any], origin: str = "changes") -> Params:
    """`params` with some keys set (nested like params.yaml), checked like a params file."""
    raw = as_dict(params)

    def merge(node: dict, update: dict) -> None:
        for key, value in update.items():
            if isinstance(value, dict) and isinstance(node.get(key), dict):
                merge(node[key], value)
            else:
                node[key] = value

    merge(raw, changes)
    return params_from_dict(raw, origin)
