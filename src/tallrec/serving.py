"""`tallrec score` and `tallrec rank`: user files in, checked line by line before any model loads, scores
out through the scoring engine (tallrec.scoring), written atomically.

The module runs past 350 lines because every check of what a user hands us (each line, each path, the
output location, the device) sits beside the command it guards; the scoring itself is tallrec.scoring's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from tallrec import paths
from tallrec.config import PromptParams
from tallrec.io import DataError, atomic_path, read_bytes, read_json, read_text
from tallrec.prompts import RecTemplate, TooLong, fit_prompt, prompt_budget, token_counter
from tallrec.scoring import Scorer, ScoringConfig


def find_adapter(adapter: Path | str) -> Path:
    """An adapter folder (with adapter_config.json), given as a path or as a name under models/."""

    path = Path(adapter)
    for folder in (path, path / "adapter", paths.MODELS / path, paths.MODELS / path / "adapter"):
        if (folder / paths.ADAPTER_CONFIG).exists():
            return folder
    raise DataError(
        adapter, f"no adapter here (expected a folder with {paths.ADAPTER_CONFIG}, or a name under models/)"
    )


def base_of_adapter(adapter: Path) -> Path | str:
    """The backbone an adapter was tuned on: its config's base_model_name_or_path, read as a folder
    or as a catalog name (models/base/<name>)."""
    from tallrec.model import CATALOG, adapter_config, base_dir

    cfg_path = adapter / paths.ADAPTER_CONFIG
    base = adapter_config(adapter).get("base_model_name_or_path")
    if not base or not isinstance(base, str):
        raise DataError(cfg_path, "no base_model_name_or_path (a text); name the backbone with --base")
    # a relative path is the project's (models/base/<name>): tried from here, then from each folder above
    # the adapter, so `tallrec score` finds it from any working directory
    tried = [Path(base)] if Path(base).is_absolute() else [Path(base)] + [p / base for p in adapter.resolve().parents]
    found = next((p for p in tried if p.exists()), None)
    if found is not None:
        return found
    if base in CATALOG:
        return base_dir(base)
    if not Path(base).is_absolute() and base.startswith(("models/", "./", "../")):
        raise DataError(
            cfg_path,
            f"base model {base!r} not found (tried it from here and from every folder above "
            "the adapter); name the backbone with --base",
        )
    return base  # a hub id or a folder elsewhere: resolve_base decides


def load_for_scoring(
    adapter: Path | str | None,
    base: Path | str | None = None,
    *,
    dtype: str = "auto",
    quantize: str = "none",
    device: str | None = None,
    threads: int | None = None,
):
    """(model, tokenizer) ready to score, resolved from user arguments: the adapter's own backbone unless
    `base` names one. Loaded by tallrec.model.load_scoring_model, the same path the evaluate stage takes."""
    from tallrec.config import ModelParams
    from tallrec.model import CATALOG, base_dir, load_scoring_model
    from tallrec.runtime import configure_threads

    configure_threads(threads)
    adapter_dir = find_adapter(adapter) if adapter is not None else None
    if base is None:
        if adapter_dir is None:
            raise ValueError("give --adapter, --base or both")
        base = base_of_adapter(adapter_dir)
    elif str(base) in CATALOG and not Path(base).exists():
        base = base_dir(str(base))
    return load_scoring_model(base, adapter_dir, ModelParams(dtype=dtype, quantize=quantize, device=device))


@dataclass
class UserQuery:
    line: int  # 1-based line in the input file
    record: dict
    liked: list[str]
    disliked: list[str]
    target: str
    domain: str
    history_dropped: int = 0  # oldest history items left out so that the prompt fits the model

    def history(self) -> list[tuple[str, bool]]:
        """(item, liked), oldest first. A line has no timestamps: its liked and disliked lists, each
        oldest first, are merged by position."""
        out = []
        for i in range(max(len(self.liked), len(self.disliked))):
            out += [(self.liked[i], True)] if i < len(self.liked) else []
            out += [(self.disliked[i], False)] if i < len(self.disliked) else []
        return out


def _texts(record: dict, key: str) -> list[str]:
    value = record[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"field {key!r} must be a list of item texts")
    return value


def _strings(value) -> Iterator[str]:
    """Every text in a parsed JSON value, object keys included (no recursion: nesting may be deep)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            yield v
        elif isinstance(v, dict):
            stack.extend(reversed([x for kv in v.items() for x in kv]))
        elif isinstance(v, list):
            stack.extend(reversed(v))


def _lone_surrogate(text: str) -> str | None:
    """The first lone surrogate in a text, written "\\udxxx": JSON's escape parses to one, but neither
    the tokenizer nor a UTF-8 file can take it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"\\u{ord(text[e.start]):04x}"
    return None


def _check_unicode(record: dict) -> None:
    """ValueError naming the field when a text of the record (key or value) holds a lone surrogate."""
    for key, value in record.items():
        for where, texts in (("a field name", [key]), (f"field {key!r}", _strings(value))):
            for text in texts:
                if bad := _lone_surrogate(text):
                    raise ValueError(f"not valid unicode: lone surrogate {bad} in {where}")


def parse_query(text: str, line: int, default_domain: str, domains: Sequence[str]) -> UserQuery:
    """One JSONL line -> a query; ValueError with the problem (no location) when it is bad."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON ({e.msg})") from None
    except RecursionError:
        raise ValueError("not JSON (nested too deeply)") from None
    if not isinstance(record, dict):
        raise ValueError("expected a JSON object with liked, disliked and target")
    _check_unicode(record)
    for key in ("liked", "disliked", "target"):
        if key not in record:
            raise ValueError(f"missing field {key!r}")
    target = record["target"]
    if not isinstance(target, str) or not target.strip():
        raise ValueError("empty target" if isinstance(target, str) else "field 'target' must be a text")
    domain = record.get("domain", default_domain)
    if domain not in domains:
        raise ValueError(f"unknown domain {domain!r} (expected one of {', '.join(domains)})")
    return UserQuery(line, record, _texts(record, "liked"), _texts(record, "disliked"), target, domain)


def read_queries(
    path: Path, default_domain: str, on_error: str, domains: Sequence[str]
) -> tuple[list[UserQuery], list[str]]:
    """All good queries of a JSONL file, plus one message per bad line ("file:line: problem").
    With on_error="fail" the first bad line raises DataError. Blank lines are ignored."""
    if on_error not in ("skip", "fail"):
        raise ValueError(f"--on-error must be skip or fail, not {on_error!r}")
    queries, problems = [], []
    # bytes, decoded a line at a time: a bad byte is the problem of its line, not of the whole file
    for n, raw in enumerate(read_bytes(path).removeprefix(b"\xef\xbb\xbf").splitlines(), start=1):  # a BOM is fine
        try:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"not valid utf-8 (byte 0x{raw[e.start]:02x})") from None
            if not text.strip():
                continue
            queries.append(parse_query(text, n, default_domain, domains))
        except ValueError as e:
            if on_error == "fail":
                raise DataError(path, str(e), n) from None
            problems.append(str(DataError(path, str(e), n)))
    return queries, problems


def fit_queries(
    queries: Sequence[UserQuery], prompt_params: PromptParams, tokenizer, budget: int, source: Path, on_error: str
) -> tuple[list[UserQuery], list[str], list[str]]:
    """(queries kept, their full prompts, problems). Each prompt is built by the project's one prompt
    module and made to fit the model by the one rule (prompts.fit_prompt: the oldest history items go
    first; the count lands in `history_dropped`); a query whose target alone is too long is a bad line.
    Item texts are used as given: write them as the domain's template renders them (movie: "Title (1995)")."""
    kept, prompts, problems = [], [], []
    count = token_counter(tokenizer)
    for q in queries:
        template = RecTemplate.from_params(q.domain, prompt_params)
        try:
            text, q.history_dropped = fit_prompt(template, q.history(), q.target, count, budget)
        except TooLong as e:
            if on_error == "fail":
                raise DataError(source, str(e), q.line) from None
            problems.append(str(DataError(source, str(e), q.line)))
            continue
        kept.append(q)
        prompts.append(text)
    return kept, prompts, problems


def score_queries(scorer: Scorer, queries: Sequence[UserQuery], prompts: Sequence[str]) -> np.ndarray:
    """p_yes per query in input order; each domain is scored on its own so its whole instruction
    prefix is one cached prefix."""
    scores = np.empty(len(queries), dtype=np.float64)
    for domain in sorted({q.domain for q in queries}):
        idx = [i for i, q in enumerate(queries) if q.domain == domain]
        scores[idx] = scorer.score([prompts[i] for i in idx])
    return scores


def write_scored(queries: Sequence[UserQuery], scores: np.ndarray, out: Path) -> None:
    """Each input line with p_yes added, written whole or not at all."""
    with atomic_path(out) as tmp, tmp.open("w", encoding="utf-8") as f:
        for q, p in zip(queries, scores):
            # ours replaces any history_dropped the input had: where nothing was dropped, none is written
            record = {k: v for k, v in q.record.items() if k != "history_dropped"}
            extra = {"history_dropped": q.history_dropped} if q.history_dropped else {}
            f.write(json.dumps({**record, "p_yes": round(float(p), 6), **extra}, ensure_ascii=False) + "\n")


def read_history(path: Path, default_domain: str, domains: Sequence[str]) -> UserQuery:
    """A user's history for `rank`: a JSON object with liked and disliked (and optionally domain)."""
    record = read_json(path)
    if not isinstance(record, dict):
        raise DataError(path, "expected a JSON object with liked and disliked")
    try:
        return parse_query(json.dumps({"target": "?", **record}), 1, default_domain, domains)
    except ValueError as e:
        raise DataError(path, str(e)) from None


def read_candidates(path: Path) -> list[str]:
    """Candidate item texts: one per line (blank lines ignored), or a JSON list of texts (.json)."""
    if path.suffix == ".json":
        items = read_json(path)
        if not isinstance(items, list) or not all(isinstance(i, str) and i.strip() for i in items):
            raise DataError(path, "expected a JSON list of non-empty item texts")
        for i, item in enumerate(items, start=1):
            if bad := _lone_surrogate(item):
                raise DataError(path, f"item {i}: not valid unicode: lone surrogate {bad}")
    else:
        items = [line.strip() for line in read_text(path).splitlines() if line.strip()]
    if not items:
        raise DataError(path, "no candidate items")
    return items


def unique(items: Sequence[str]) -> list[str]:
    """The items without repeats, each where it first occurs."""
    return list(dict.fromkeys(items))


def rank_table(history: UserQuery, candidates: Sequence[str], scores: np.ndarray, top: int):
    """A rich table of the best `top` candidates, best first (ties keep file order)."""
    from rich.table import Table
    from rich.text import Text

    order = np.argsort(-scores, kind="stable")[:top]
    # Text, not str: item texts are the user's, never rich markup ("[/x]" would crash, "[b]" vanish)
    table = Table(title=Text(f"top {len(order)} of {len(candidates)} {history.domain} candidates"))
    table.add_column("rank", justify="right")
    table.add_column("p_yes", justify="right")
    table.add_column("item")
    for r, i in enumerate(order, start=1):
        table.add_row(str(r), f"{scores[i]:.4f}", Text(candidates[i]))
    return table


def prompt_params_of(params_file: Path) -> tuple[PromptParams, int]:
    """The prompt section and model.max_length of the params file. Without one in the working directory
    (a user may run outside the project) the defaults; a --params file named but missing is an error."""
    from tallrec.config import Params, load_params

    missing_default = Path(params_file) == paths.PARAMS and not paths.PARAMS.exists()
    params = Params() if missing_default else load_params(params_file)
    return params.prompt, params.model.max_length


def budget_of(model, tokenizer, prompt_params: PromptParams, max_length: int) -> int:
    from tallrec.model import context_length

    return prompt_budget(tokenizer, prompt_params, max_length, context_length(model))


def domains_of(prompt: PromptParams) -> list[str]:
    return sorted(prompt.items)


@dataclass
class LoadConfig:
    adapter: str | None = None
    base: str | None = None
    dtype: str = "auto"
    quantize: str = "none"
    device: str | None = None
    batch_size: int = 8


def check_device(load: LoadConfig) -> None:
    """--device names a device of this machine: checked before the inputs are read and the model loads."""
    from tallrec.runtime import pick_device

    pick_device(load.device, "--device")


def same_file(a: Path | str, b: Path | str) -> bool:
    """Whether two paths name one file: through symlinks and hard links, `b` may not exist yet."""
    try:
        return Path(a).samefile(b)
    except OSError:  # one of them does not exist (yet)
        try:
            return Path(a).resolve() == Path(b).resolve()
        except (OSError, RuntimeError):  # a symlink loop
            return False


def check_writable(out: Path) -> None:
    """Where --output goes can take a new file: checked before the model loads (it failed after scoring)."""
    import os

    ancestor = out.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"--output {out} cannot be written: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"--output {out} cannot be written: the folder {ancestor} is read-only")


def run_score(
    input: Path, output: Path, domain: str, on_error: str, load: LoadConfig, params_file: Path
) -> tuple[int, list[str], int]:
    """`tallrec score`: (lines written, problems, prompts shortened). The input is checked before the
    model loads."""
    if same_file(input, output):
        raise ValueError(
            f"--output {output} is the same file as --input {input}; scoring would overwrite it, "
            "choose another --output"
        )
    if Path(output).is_dir():
        raise ValueError(f"--output {output} is a folder; name the file to write")
    check_writable(Path(output))
    check_device(load)
    prompt_params, max_length = prompt_params_of(params_file)
    queries, problems = read_queries(input, domain, on_error, domains_of(prompt_params))
    if not queries:
        if not problems:
            raise DataError(input, "no lines to score")
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise DataError(input, f"no good lines to score ({len(problems)} bad: {shown})")
    model, tokenizer = load_for_scoring(
        load.adapter, load.base, dtype=load.dtype, quantize=load.quantize, device=load.device
    )
    queries, prompts, too_long = fit_queries(
        queries, prompt_params, tokenizer, budget_of(model, tokenizer, prompt_params, max_length), input, on_error
    )
    problems += too_long
    if not queries:
        raise DataError(input, f"no good lines to score ({len(problems)} bad: {problems[0]})")
    scores = score_queries(
        Scorer(model, tokenizer, ScoringConfig(batch_size=load.batch_size, prompt=prompt_params)), queries, prompts
    )
    write_scored(queries, scores, output)
    return len(queries), problems, sum(q.history_dropped > 0 for q in queries)


def run_rank(history: Path, candidates: Path, top: int, domain: str, load: LoadConfig, params_file: Path):
    """`tallrec rank`: (the rich table of the best candidates for one user, how many repeated
    candidates were dropped: each item is scored and listed once)."""
    check_device(load)
    prompt_params, max_length = prompt_params_of(params_file)
    user = read_history(history, domain, domains_of(prompt_params))
    given = read_candidates(candidates)
    items = unique(given)
    if top < 1:
        raise ValueError(f"--top must be at least 1, not {top}")
    model, tokenizer = load_for_scoring(
        load.adapter, load.base, dtype=load.dtype, quantize=load.quantize, device=load.device
    )
    queries = [UserQuery(i + 1, {}, user.liked, user.disliked, item, user.domain) for i, item in enumerate(items)]
    queries, prompts, _ = fit_queries(
        queries, prompt_params, tokenizer, budget_of(model, tokenizer, prompt_params, max_length), candidates, "fail"
    )
    scores = score_queries(
        Scorer(model, tokenizer, ScoringConfig(batch_size=load.batch_size, prompt=prompt_params)), queries, prompts
    )
    return rank_table(user, items, scores, top), len(given) - len(items)
