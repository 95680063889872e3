"""Raw files in, instruction samples out: the fetch and prepare stages.

fetch copies every raw file from the team mirror (or downloads it from its official release when the
mirror lacks it) and verifies its pinned sha256. prepare turns them into the paper's samples:

- movie: per user (in order of first appearance), interactions sorted by time (stable); every
  position i >= 10 gives a sample whose history is the 10 interactions before it. All users'
  samples are concatenated, the last 10,000 kept and split 8:1:1 in order.
- book: ratings inner-joined with books on ISBN; users with more than 3 books, shuffled with a
  seed and split 8:1:1; per user the books are shuffled, the last is the target and up to 10
  before it the history.
- alpaca: the 52,002 instruction records as they are.

The module runs past 350 lines because each domain's recipe is written out step by step beside the
raw-file checks it relies on (pinned sha256, the columns and value ranges of every file), so that a
reader can hold it against the paper's description and the released data in one place.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from rich.progress import Progress

from tallrec import paths
from tallrec.config import BookData, MovieData, Params, PromptParams
from tallrec.io import (
    DataError,
    atomic_dir,
    atomic_path,
    read_json,
    read_text,
    remove_stale,
    sha256_of,
    write_json,
    write_parquet,
)
from tallrec.prompts import RecTemplate


@dataclass(frozen=True)
class RawFile:
    path: str  # relative to data/raw/ and to the mirror
    sha256: str
    url: str  # official release; a zip when `member` is set
    member: str | None = None


ML100K_ZIP = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
BX_ZIP = "http://www2.informatik.uni-freiburg.de/~cziegler/BX/BX-CSV-Dump.zip"
ALPACA_JSON = "https://raw.githubusercontent.com/tatsu-lab/stanford_alpaca/main/alpaca_data.json"

RAW_FILES: dict[str, list[RawFile]] = {
    "movie": [
        RawFile(
            "ml-100k/u.data",
            "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
            ML100K_ZIP,
            "ml-100k/u.data",
        ),
        RawFile(
            "ml-100k/u.item",
            "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
            ML100K_ZIP,
            "ml-100k/u.item",
        ),
        RawFile(
            "ml-100k/u.user",
            "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c",
            ML100K_ZIP,
            "ml-100k/u.user",
        ),
        RawFile(
            "ml-100k/u.genre",
            "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb",
            ML100K_ZIP,
            "ml-100k/u.genre",
        ),
        RawFile(
            "ml-100k/README",
            "4883b8cf340ed0059971b33f56ad3adc88a40792108ebca3d24aafc4c82e8b52",
            ML100K_ZIP,
            "ml-100k/README",
        ),
    ],
    "book": [
        RawFile(
            "bookcrossing/BX-Book-Ratings.csv",
            "f359084e5f350151b61f3d07acbe3c6ff0e2bd057d88901fa60507449d0e0e57",
            BX_ZIP,
            "BX-Book-Ratings.csv",
        ),
        RawFile(
            "bookcrossing/BX-Books.csv",
            "b7a21c9332e39226758a3dce6365f1a5c23653514ca445b419b938adf5b41ce6",
            BX_ZIP,
            "BX-Books.csv",
        ),
        RawFile(
            "bookcrossing/BX-Users.csv",
            "5e5302cb2114bd8910ea2fcde17f3583f0a62bd8da512d5fa1b0c0c65803b898",
            BX_ZIP,
            "BX-Users.csv",
        ),
    ],
    "alpaca": [
        RawFile(
            "alpaca/alpaca_data.json", "2eddafc6b977608d778aaab8dfc7e50e547b3af9826dfb9e909d9fc362e4a419", ALPACA_JSON
        ),
    ],
}


def check_domain(domain: str) -> None:
    """One line for a domain with no raw files (the fetch/prepare stages' argument)."""
    if domain not in RAW_FILES:
        raise ValueError(f"unknown domain {domain!r}: expected {', '.join(RAW_FILES)}")


def check_pinned(path: Path, raw: RawFile, where: Path | str, fix: str) -> None:
    """`path` holds `raw` as its release pinned it (sha256), else one line at `where` ending in `fix`."""
    got = sha256_of(path)
    if got != raw.sha256:
        raise DataError(
            where, f"sha256 {got[:12]}… of {raw.path} is not the pinned release's ({raw.sha256[:12]}…): {fix}"
        )


# ---------------------------------------------------------------------------------------------
# fetch


def _download(raw: RawFile, dest: Path, cache: dict[str, Path]) -> None:
    """Download `raw` from its official URL into `dest` (zips are fetched once per run)."""
    if raw.member is None:
        with urllib.request.urlopen(raw.url, timeout=60) as r, open(dest, "wb") as f:
            shutil.copyfileobj(r, f)
        return
    if raw.url not in cache:
        fd, zip_path = tempfile.mkstemp(suffix=".zip")
        with urllib.request.urlopen(raw.url, timeout=60) as r, open(fd, "wb") as f:
            shutil.copyfileobj(r, f)
        cache[raw.url] = Path(zip_path)
    with zipfile.ZipFile(cache[raw.url]) as z, z.open(raw.member) as src, open(dest, "wb") as f:
        shutil.copyfileobj(src, f)


def fetch(mirror: Path | str, out: Path | str = paths.RAW, files: list[RawFile] | None = None) -> list[Path]:
    """Copy (or download) and verify every raw file; a bad file leaves nothing behind."""
    mirror, out = Path(mirror), Path(out)
    files = files if files is not None else [f for group in RAW_FILES.values() for f in group]
    zips: dict[str, Path] = {}
    written = []
    try:
        with Progress() as progress:
            task = progress.add_task("fetch raw data", total=len(files))
            for raw in files:
                dest = out / raw.path
                with atomic_path(dest) as tmp:
                    source = mirror / raw.path
                    if source.exists():
                        shutil.copyfile(source, tmp)
                        origin = str(source)
                    else:
                        try:
                            _download(raw, tmp, zips)
                        except Exception as e:  # noqa: BLE001 - any failure means the file is unavailable
                            raise DataError(
                                source, f"not in the mirror and download from {raw.url} failed ({e})"
                            ) from e
                        origin = raw.url
                    check_pinned(tmp, raw, origin, "the source differs from the pinned release")
                written.append(dest)
                progress.advance(task)
    finally:
        for z in zips.values():
            z.unlink(missing_ok=True)
    return written


# ---------------------------------------------------------------------------------------------
# reading raw files, with one-line errors that name the file and line


def read_delimited(path: Path, sep: str, columns: list[str], encoding: str) -> pl.DataFrame:
    """A headerless, unquoted text table (the MovieLens files); every field is kept as a string."""
    text = read_text(path, encoding)
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(sep)
        if len(fields) != len(columns):
            raise DataError(path, f"expected {len(columns)} {sep!r}-separated fields, found {len(fields)}", number)
        rows.append((number, *fields))
    return pl.DataFrame(rows, schema=["line", *columns], orient="row")


def read_quoted_csv(path: Path, columns: list[str], encoding: str = "latin-1") -> tuple[pl.DataFrame, list[int]]:
    """A `;`-separated, double-quoted CSV with a header (the Book-Crossing dump).

    Returns the rows with exactly len(columns) fields and the line numbers of those without.
    """
    text = read_text(path, encoding)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=";", quotechar='"')
    header = next(reader)
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(path, f"missing column {missing[0]!r} in header {header}", 1)
    if header[: len(columns)] != columns:
        raise DataError(path, f"expected columns {columns}, found {header}", 1)
    good, broken = [], []
    for fields in reader:
        if not fields:
            continue
        if len(fields) == len(header):
            good.append((reader.line_num, *fields[: len(columns)]))
        else:
            broken.append(reader.line_num)
    return pl.DataFrame(good, schema=["line", *columns], orient="row"), broken


def _to_int(df: pl.DataFrame, path: Path, column: str) -> pl.Series:
    values = df[column].str.strip_chars().cast(pl.Int64, strict=False)
    bad = values.is_null()
    if bad.any():
        row = df.filter(bad).row(0, named=True)
        raise DataError(path, f"column {column!r} is not an integer: {row[column]!r}", row["line"])
    return values


def read_original_json(path: Path | str) -> pl.DataFrame:
    """A list of {"instruction", "input", "output"} records: Alpaca's file and TALLRec's data format."""
    path = Path(path)
    records = read_json(path)
    if not isinstance(records, list):
        raise DataError(path, "expected a JSON list of records")
    if not records:
        raise DataError(path, "no records")
    for i, record in enumerate(records):
        for field in ("instruction", "input", "output"):
            if not isinstance(record, dict) or not isinstance(record.get(field), str):
                raise DataError(path, f"record {i} has no string field {field!r}")
    return pl.DataFrame(
        {f: [r[f] for r in records] for f in ("instruction", "input", "output")},
        schema={"instruction": pl.String, "input": pl.String, "output": pl.String},
    )


# ---------------------------------------------------------------------------------------------
# prepare


def _render(samples: pl.DataFrame, template: RecTemplate) -> pl.DataFrame:
    """Add instruction / input / output columns from the structured ones."""
    inputs, outputs = [], []
    for texts, labels, target, label in samples.select(
        "history_texts", "history_labels", "target_text", "label"
    ).iter_rows():
        liked = [t for t, y in zip(texts, labels) if y]
        disliked = [t for t, y in zip(texts, labels) if not y]
        inputs.append(template.input(liked, disliked, target))
        outputs.append(template.output(label))
    return samples.with_columns(
        pl.lit(template.instruction).alias("instruction"),
        pl.Series("input", inputs, dtype=pl.String),
        pl.Series("output", outputs, dtype=pl.String),
    )


SAMPLE_COLUMNS = [
    "domain",
    "user",
    "history_item_ids",
    "history_ratings",
    "history_labels",
    "history_texts",
    "target_item_id",
    "target_text",
    "rating",
    "label",
    "instruction",
    "input",
    "output",
]


def _positive_rates(splits: dict[str, pl.DataFrame]) -> dict[str, float | None]:
    return {k: round(float(v["label"].mean()), 4) if v.height else None for k, v in splits.items()}


def _split_in_order(samples: pl.DataFrame, fractions: list[float]) -> dict[str, pl.DataFrame]:
    n = samples.height
    a, b = int(n * fractions[0]), int(n * (fractions[0] + fractions[1]))
    return {"train": samples[:a], "valid": samples[a:b], "test": samples[b:]}


def _windows(df: pl.DataFrame, history_len: int, columns: list[str]) -> pl.DataFrame:
    """Rows already ordered per user: attach the `history_len` previous rows' values as lists."""
    lists = {
        f"history_{c}": pl.concat_list([pl.col(c).shift(k).over("user") for k in range(history_len, 0, -1)])
        for c in columns
    }
    return df.with_columns(pos=pl.int_range(pl.len()).over("user"), **lists)


def _samples(
    rows: pl.DataFrame, domain: str, target_item: str, template: RecTemplate, fractions: list[float]
) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    """The samples of `rows` (one a row: user, history_{item_id,rating,label,text} lists, the target's text,
    rating and label, its id in column `target_item`) with their prompts, and their splits in order."""
    samples = rows.select(
        domain=pl.lit(domain),
        user=pl.col("user"),
        history_item_ids=pl.col("history_item_id"),
        history_ratings=pl.col("history_rating"),
        history_labels=pl.col("history_label"),
        history_texts=pl.col("history_text"),
        target_item_id=pl.col(target_item),
        target_text=pl.col("text"),
        rating=pl.col("rating"),
        label=pl.col("label"),
    )
    samples = _render(samples, template).select(SAMPLE_COLUMNS)
    return samples, _split_in_order(samples, fractions)


def prepare_movie(
    raw: Path, params: MovieData, prompt_params: PromptParams | None = None
) -> tuple[dict[str, pl.DataFrame], dict]:
    template = RecTemplate.from_params("movie", prompt_params)
    data_path, item_path = raw / "ml-100k/u.data", raw / "ml-100k/u.item"
    ratings = read_delimited(data_path, "\t", ["user", "item", "rating", "timestamp"], "ascii")
    ratings = ratings.with_columns(*[_to_int(ratings, data_path, c) for c in ("item", "rating", "timestamp")])
    items = read_delimited(item_path, "|", [f"f{i}" for i in range(24)], "latin-1")
    items = items.select(item=_to_int(items, item_path, "f0"), title=pl.col("f1"))
    unknown = ratings.join(items, on="item", how="anti")
    if unknown.height:
        row = unknown.row(0, named=True)
        raise DataError(data_path, f"item {row['item']} is not in {item_path.name}", row["line"])

    threshold = params.like_threshold
    history_len = params.history_len
    items = items.with_columns(
        text=pl.col("title").map_elements(lambda t: template.item_text(title=t), return_dtype=pl.String)
    )
    df = (
        ratings.with_row_index("row")
        .with_columns(first_seen=pl.col("row").min().over("user"))
        .sort("first_seen", "timestamp", "row")  # users by first appearance; ties keep file order
        .join(items.select("item", "text"), on="item", how="left", maintain_order="left")
        .with_columns(item_id=pl.col("item").cast(pl.String), label=(pl.col("rating") > threshold).cast(pl.Int8))
    )
    df = _windows(df, history_len, ["item_id", "rating", "label", "text"]).filter(pl.col("pos") >= history_len)
    samples, splits = _samples(df.tail(params.keep_last), "movie", "item_id", template, params.split)
    report = {
        "ratings": ratings.height,
        "users": ratings["user"].n_unique(),
        "items": items.height,
        "samples_before_cut": df.height,
        "samples_kept": samples.height,
        "split_rows": {k: v.height for k, v in splits.items()},
        "positive_rate": _positive_rates(splits),
    }
    return splits, report


BOOK_RATING_COLUMNS = ["User-ID", "ISBN", "Book-Rating"]
BOOK_COLUMNS = ["ISBN", "Book-Title", "Book-Author"]


def prepare_book(
    raw: Path, params: BookData, prompt_params: PromptParams | None = None
) -> tuple[dict[str, pl.DataFrame], dict]:
    template = RecTemplate.from_params("book", prompt_params)
    ratings_path, books_path = raw / "bookcrossing/BX-Book-Ratings.csv", raw / "bookcrossing/BX-Books.csv"
    ratings, broken_ratings = read_quoted_csv(ratings_path, BOOK_RATING_COLUMNS)
    if broken_ratings:
        raise DataError(ratings_path, "wrong number of fields", broken_ratings[0])
    ratings = ratings.select(
        user=pl.col("User-ID"), isbn=pl.col("ISBN"), rating=_to_int(ratings, ratings_path, "Book-Rating")
    )
    books, broken_books = read_quoted_csv(books_path, BOOK_COLUMNS)
    books = books.select(isbn=pl.col("ISBN"), title=pl.col("Book-Title"), author=pl.col("Book-Author"))

    implicit_zeros = int((ratings["rating"] == 0).sum())
    if params.drop_implicit_zeros:
        ratings = ratings.filter(pl.col("rating") > 0)
    joined = ratings.with_row_index("row").join(books, on="isbn", how="inner", maintain_order="left")
    counts = joined.group_by("user", maintain_order=True).len()
    users = counts.filter(pl.col("len") >= params.min_ratings)["user"]

    rng = np.random.default_rng(params.seed)
    users = users.gather(rng.permutation(users.len()))  # users in first-appearance order, then shuffled
    user_rank = pl.DataFrame({"user": users, "user_rank": np.arange(users.len())})
    df = joined.join(user_rank, on="user", how="inner").sort("user_rank", "row")
    df = df.with_columns(shuffle_key=pl.Series(rng.random(df.height))).sort("user_rank", "shuffle_key")

    threshold = params.like_threshold
    df = df.with_columns(
        text=pl.struct("title", "author").map_elements(
            lambda r: template.item_text(title=r["title"], author=r["author"]), return_dtype=pl.String
        ),
        label=(pl.col("rating") > threshold).cast(pl.Int8),
        pos=pl.int_range(pl.len()).over("user_rank"),
        n=pl.len().over("user_rank"),
    )
    history = df.filter(pl.col("pos") < pl.min_horizontal(pl.col("n") - 1, params.history_len))
    history = history.group_by("user_rank", maintain_order=True).agg(
        history_item_id=pl.col("isbn"),
        history_rating=pl.col("rating"),
        history_label=pl.col("label"),
        history_text=pl.col("text"),
    )
    targets = df.filter(pl.col("pos") == pl.col("n") - 1)
    rows = targets.join(history, on="user_rank", how="left").sort("user_rank")
    samples, splits = _samples(rows, "book", "isbn", template, params.split)
    report = {
        "ratings": ratings.height + (implicit_zeros if params.drop_implicit_zeros else 0),
        "implicit_zero_ratings": implicit_zeros,
        "implicit_zeros_dropped": bool(params.drop_implicit_zeros),
        "books_rows_read": books.height + len(broken_books),
        "books_rows_dropped_broken_field_count": len(broken_books),
        "books_broken_lines": broken_books,
        "ratings_joined": joined.height,
        "users_joined": counts.height,
        "users_kept": users.len(),
        "split_rows": {k: v.height for k, v in splits.items()},
        "positive_rate": _positive_rates(splits),
    }
    return splits, report


def prepare_alpaca(raw: Path) -> tuple[dict[str, pl.DataFrame], dict]:
    df = read_original_json(raw / "alpaca/alpaca_data.json")
    report = {"records": df.height, "with_input": int((df["input"] != "").sum())}
    return {"train": df}, report


def verify_raw(domain: str, raw: Path = paths.RAW) -> None:
    """The pinned sha256 of every raw file `domain` reads, as fetch checks it: a truncated or re-encoded
    file would otherwise give other splits with exit status 0."""
    check_domain(domain)
    for file in RAW_FILES[domain]:
        path = Path(raw) / file.path
        if not path.is_file():
            raise DataError(path, "raw file not found (run `tallrec fetch`)")
        check_pinned(path, file, path, "restore it with `tallrec fetch`")


def prepare(domain: str, params: Params, raw: Path = paths.RAW) -> dict:
    """Run the prepare step of one domain and write its splits and report atomically.

    The whole folder data/processed/<domain>/ is built beside the old one and swapped in at once
    (io.atomic_dir), so a kill at any point leaves the complete old or the complete new folder, never
    a mix of splits from two runs; what killed runs left beside it is removed first.
    """
    check_domain(domain)
    out = paths.processed_dir(domain)
    remove_stale(out)
    if domain == "movie":
        splits, report = prepare_movie(raw, params.data.movie, params.prompt)
    elif domain == "book":
        splits, report = prepare_book(raw, params.data.book, params.prompt)
    else:
        splits, report = prepare_alpaca(raw)
    with atomic_dir(out) as tmp:
        for split, df in splits.items():
            write_parquet(df, tmp / paths.split_path(domain, split).relative_to(out))
        write_json(report, tmp / paths.report_path(domain).relative_to(out))
    return report


def export_original_json(domain: str, split: str, out: Path | str) -> int:
    """Write a split in the original TALLRec repo's JSON format; returns the record count."""
    df = pl.read_parquet(paths.split_path(domain, split), columns=["instruction", "input", "output"])
    records = df.to_dicts()
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(records, indent=4), encoding="utf-8")
    return len(records)
