"""The data stages on the real mirror (../shared/datasets): the paper's split sizes."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from tallrec import data, paths, sampling
from tallrec.cli import app
from tallrec.config import load_params, with_changes
from tallrec.names import DOMAINS

ROOT = Path(__file__).resolve().parents[1]
MIRROR = (ROOT / load_params(ROOT / "params.yaml").data.mirror).resolve()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    if not MIRROR.exists():
        pytest.fail(f"the data mirror {MIRROR} is missing: these tests need ../shared/datasets beside the project")
    work = tmp_path_factory.mktemp("real")
    cwd = os.getcwd()
    os.chdir(work)
    try:
        params = load_params(ROOT / "params.yaml")
        data.fetch(MIRROR)
        reports = {d: data.prepare(d, params) for d in ("movie", "book", "alpaca")}
        shots = sampling.sample(
            with_changes(
                params,
                {
                    "sample": {"ks": [16, 64], "seeds": [0, 1]},
                    "rec_tune": {"seeds": [0]},
                    "baselines": {"ks": [16, 64], "seeds": [0, 1]},
                },
            )
        )
        yield work, reports, shots
    finally:
        os.chdir(cwd)


@pytest.mark.slow
def test_paper_split_sizes(prepared):
    work, reports, _ = prepared
    sizes = {d: {s: pl.read_parquet(work / paths.split_path(d, s)).height for s in paths.SPLITS} for d in DOMAINS}
    assert sizes["movie"] == {"train": 8000, "valid": 1000, "test": 1000}
    assert sizes["book"] == {"train": 19414, "valid": 2427, "test": 2427}
    assert pl.read_parquet(work / paths.split_path("alpaca", "train")).height == 52002
    book = reports["book"]
    assert book["users_joined"] == 92106 and book["users_kept"] == 24268
    assert book["books_rows_dropped_broken_field_count"] == 22
    assert book["implicit_zero_ratings"] == 716109


@pytest.mark.slow
def test_real_prompt_text(prepared):
    work, _, _ = prepared
    row = pl.read_parquet(work / paths.split_path("movie", "test")).row(0, named=True)
    assert row["instruction"] == (
        "Given the user's preference and unpreference, identify whether the user will like the target "
        'movie by answering "Yes." or "No.".'
    )
    assert row["input"].startswith('User Preference: "') and "\nUser Unpreference: " in row["input"]
    assert row["input"].endswith(f"Whether the user will like the target movie {row['target_text']}?")
    assert len(row["history_item_ids"]) == 10


@pytest.mark.slow
def test_real_shots(prepared):
    work, _, shots = prepared
    assert len(shots) == 12
    both = pl.read_parquet(work / paths.shot_path("both", 64, 1))
    assert both.height == 128 and both["domain"].value_counts().height == 2


def test_cli_bad_input_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data/raw/ml-100k").mkdir(parents=True)
    (tmp_path / "data/raw/ml-100k/u.data").write_text("1\t2\t3\n")
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    result = CliRunner().invoke(app, ["prepare", "movie"])
    assert result.exit_code == 1
    # the raw file is not the pinned release: refused before it is parsed (its schema errors: tests/test_data.py)
    assert result.output.strip().startswith("error: data/raw/ml-100k/u.data: sha256 ")
    assert result.output.strip().endswith(
        "is not the pinned release's (06416e597f82…): restore it with `tallrec fetch`"
    )
    assert not (tmp_path / "data/processed").exists()


def test_the_splits_reproduce_the_released_tallrec_data(prepared):
    """The README's claim, checked: the movie valid and test splits are the released TALLRec files record
    for record, in order (per-record sha256 digests of github.com/SAI990323/TALLRec's data/movie/*.json,
    kept as a fixture, never the records); the book splits have the released sizes and label balance
    within a point."""
    import hashlib
    import json

    import polars as pl

    work, _, _ = prepared
    released = json.loads((ROOT / "tests" / "fixtures" / "released_tallrec.json").read_text())
    for split in ("valid", "test"):
        df = pl.read_parquet(work / paths.split_path("movie", split), columns=["instruction", "input", "output"])
        ours = [
            hashlib.sha256(json.dumps([i, x, o], ensure_ascii=False).encode()).hexdigest()[:16]
            for i, x, o in df.iter_rows()
        ]
        want = released["movie"][split]
        assert len(ours) == len(want) == 1000
        differ = [n for n, (a, b) in enumerate(zip(ours, want)) if a != b]
        assert not differ, f"movie {split}: {len(differ)} records differ, the first at record {differ[0]}"
        # book: the released users were drawn by a shuffle we cannot replay; the sizes are the same and
        # the share of "Yes." within a point (docs/pipeline.md gives both counts)
        book = pl.read_parquet(work / paths.split_path("book", split), columns=["output"])
        theirs = released["book"][split]
        assert book.height == theirs["records"] == theirs["yes"] + theirs["no"]
        assert abs(float((book["output"] == "Yes.").mean()) - theirs["yes"] / theirs["records"]) < 0.01
