"""params.yaml as one typed tree: the only home of every default, type and range.

`load_params` reads the file (through tallrec.yaml_reader, which knows YAML and dataclasses but not
this tree) and returns a frozen `Params`. Every key of the file must be one the tree knows and every
key the tree knows must be in the file (DVC tracks them there), with the right type and in range;
anything else is one `ParamsError` line naming the file, the line, the key and the problem, raised
before any stage does work. `Params()` holds the defaults, which are also what the committed
params.yaml says (a test keeps the two equal). `set_param` applies a `dvc exp run -S`-style override
to an existing key only; `with_changes` sets nested keys of a tree in code. The module is long because
it is the whole schema, every section with its checks, in the one place a default may live.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tallrec.catalog import CATALOG
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
from tallrec.yaml_reader import (  # noqa: F401  (Yaml12Loader, set_param: re-exported for the callers)
    Yaml12Loader,
    as_dict,
    build,
    failing,
    merged,
    parse_yaml,
    read_yaml_text,
    set_param,
)
from tallrec.yaml_reader import YamlError as ParamsError  # a bad params file or override: one line

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


def _log_range(v) -> str | None:
    return None if len(v) == 2 and 0 < v[0] < v[1] else "must be two numbers 0 < low < high (a log-scale range)"


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
    missing = [d for d in DOMAINS if d not in items]
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
    # Figure 3's x axis (log scale; its ticks are sample.ks, Table 3's K): the range around them
    figure3_xlim: tuple[float, ...] = _p((12, 340), _log_range)


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


def params_from_dict(raw: Any, path: Path | str = PARAMS, lines: dict[str, int] | None = None) -> Params:
    """The typed tree of a parsed params mapping; the first problem is one ParamsError."""
    fail = failing(path, lines)
    if not isinstance(raw, dict):
        raise ParamsError(path, "", "expected a mapping of sections at the top level")
    params = build(Params, raw, fail)
    for key, problem in _cross_checks(params):
        fail(key, problem)
    return params


def read_params_text(path: Path | str) -> str:
    return read_yaml_text(path, missing="params file not found (run from the project root, or pass --params)")


def load_params(path: Path | str = PARAMS, overrides: list[str] | tuple[str, ...] = ()) -> Params:
    """params.yaml (plus `key=value` overrides) as the checked, typed tree."""
    raw, lines = parse_yaml(read_params_text(path), path)
    for assignment in overrides:
        set_param(raw, assignment, path)
    return params_from_dict(raw, path, lines)


def with_changes(
    params: Params, changes: Any, origin: Path | str = "changes", lines: dict[str, int] | None = None
) -> Params:
    """`params` with some keys set (nested like params.yaml), checked like a params file: the one
    place nested changes meet params (tests, and an older experiment's file over today's defaults)."""
    if not isinstance(changes, dict):
        raise ParamsError(origin, "", "expected a mapping of sections at the top level")
    return params_from_dict(merged(as_dict(params), changes), origin, lines)
