"""The data stages on small raw files the tests write themselves."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import polars as pl
import pytest

from tallrec import data, io, paths, sampling
from tallrec.config import BookData, MovieData, Params, with_changes
from tallrec.data import RawFile
from tallrec.io import DataError
from tallrec.names import DOMAINS

MOVIE_PARAMS = {"history_len": 3, "keep_last": 10_000, "split": [0.8, 0.1, 0.1], "like_threshold": 3}
BOOK_PARAMS = {
    "history_len": 10,
    "min_ratings": 4,
    "split": [0.8, 0.1, 0.1],
    "like_threshold": 5,
    "drop_implicit_zeros": False,
    "seed": 0,
}


def movie(**changes) -> MovieData:
    return with_changes(Params(), {"data": {"movie": {**MOVIE_PARAMS, **changes}}}).data.movie


def book(**changes) -> BookData:
    return with_changes(Params(), {"data": {"book": {**BOOK_PARAMS, **changes}}}).data.book


def project(**movie_changes) -> Params:
    return with_changes(Params(), {"data": {"movie": {**MOVIE_PARAMS, **movie_changes}}})


def write_movie_raw(raw: Path, ratings: list[tuple[int, int, int, int]], n_items: int = 9) -> Path:
    (raw / "ml-100k").mkdir(parents=True, exist_ok=True)
    (raw / "ml-100k/u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in ratings))
    titles = {i: f"Movie {i} (199{i % 10})" for i in range(1, n_items + 1)}
    titles[1] = "Café Society (1995)"  # latin-1 byte 0xe9 in the file
    lines = [f"{i}|{t}|01-Jan-1995||http://x|" + "|".join("0" * 19) for i, t in titles.items()]
    (raw / "ml-100k/u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    return raw


def test_movie_windows_follow_time_with_file_order_on_ties(tmp_path):
    # user 7 appears first in the file; their items 2 and 3 share a timestamp (file order wins)
    ratings = [(7, 5, 5, 40), (7, 2, 1, 10), (9, 1, 4, 5), (7, 3, 4, 10), (7, 4, 2, 30), (7, 6, 5, 50)]
    ratings += [(9, i, 3, 10 + i) for i in range(2, 6)]
    splits, report = data.prepare_movie(write_movie_raw(tmp_path, ratings), movie())
    rows = pl.concat(splits.values())
    # user 7 sorted: 2(t10) 3(t10) 4(t30) 5(t40) 6(t50); windows of 3 give targets 5 and 6
    first = rows.row(0, named=True)
    assert first["user"] == "7"
    assert first["history_item_ids"] == ["2", "3", "4"]
    assert first["target_item_id"] == "5"
    assert first["history_labels"] == [0, 1, 0]  # like = rating > 3
    assert rows["user"].to_list() == ["7", "7", "9", "9"]
    assert report["samples_before_cut"] == 4
    # the rendered input reproduces the released format
    assert first["input"] == (
        'User Preference: "Movie 3 (1993)"\nUser Unpreference: "Movie 2 (1992)", "Movie 4 (1994)"\n'
        'Whether the user will like the target movie "Movie 5 (1995)"?'
    )
    assert first["output"] == "Yes."


def test_movie_keeps_the_last_windows_and_splits_in_order(tmp_path):
    ratings = [(1, i, 1 + i % 5, i) for i in range(1, 10)] + [(2, i, 1 + i % 5, 100 + i) for i in range(1, 10)]
    raw = write_movie_raw(tmp_path, ratings)
    splits, report = data.prepare_movie(raw, movie(keep_last=10, split=[0.6, 0.2, 0.2]))
    assert report["samples_before_cut"] == 12
    assert {k: v.height for k, v in splits.items()} == {"train": 6, "valid": 2, "test": 2}
    kept = pl.concat(splits.values())
    # the cut drops the two earliest windows (user 1's first two targets)
    assert kept["target_item_id"].to_list()[:2] == ["6", "7"] and kept["user"][0] == "1"
    assert splits["test"]["target_item_id"].to_list() == ["8", "9"] and splits["test"]["user"][0] == "2"


def test_movie_latin1_titles(tmp_path):
    ratings = [(1, i, 4, i) for i in range(9, 0, -1)] + [(1, 1, 5, 100)]
    splits, _ = data.prepare_movie(write_movie_raw(tmp_path, ratings), movie())
    texts = pl.concat(splits.values())["target_text"].to_list()
    assert '"Café Society (1995)"' in texts


@pytest.mark.parametrize(
    "content, problem, line",
    [
        (b"1\t2\t3\t4\n1\t2\t3\n", "expected 4 '\\t'-separated fields, found 3", 2),
        (b"1\t2\t3\t4\n1\t2\t\xe93\t4\n", "not valid ascii", 2),
        (b"", "file is empty", None),
        (b"1\t2\tfive\t4\n", "column 'rating' is not an integer", 1),
    ],
)
def test_movie_bad_input_names_file_line_and_problem(tmp_path, content, problem, line):
    raw = write_movie_raw(tmp_path, [(1, 1, 1, 1)])
    (raw / "ml-100k/u.data").write_bytes(content)
    with pytest.raises(DataError) as e:
        data.prepare_movie(raw, movie())
    where = f"u.data:{line}: " if line else "u.data: "
    assert where in str(e.value) and problem in str(e.value)
    assert "\n" not in str(e.value)


def write_book_raw(
    raw: Path, ratings: list[tuple[str, str, int]], books: dict[str, tuple[str, str]], broken: list[str] = ()
) -> Path:
    (raw / "bookcrossing").mkdir(parents=True, exist_ok=True)
    lines = ['"User-ID";"ISBN";"Book-Rating"'] + [f'"{u}";"{i}";"{r}"' for u, i, r in ratings]
    (raw / "bookcrossing/BX-Book-Ratings.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode("latin-1"))
    head = (
        '"ISBN";"Book-Title";"Book-Author";"Year-Of-Publication";"Publisher";"Image-URL-S";"Image-URL-M";"Image-URL-L"'
    )
    rows = [f'"{i}";"{t}";"{a}";"2001";"P";"s";"m";"l"' for i, (t, a) in books.items()]
    (raw / "bookcrossing/BX-Books.csv").write_bytes(("\r\n".join([head, *rows, *broken]) + "\r\n").encode("latin-1"))
    return raw


def book_fixture(tmp_path, n_users=20, **params):
    books = {f"B{i}": (f"Title {i}", f"Author {i % 3}") for i in range(12)}
    ratings = [(f"u{u}", f"B{(u * 7 + j) % 12}", (u + j) % 11) for u in range(n_users) for j in range(2 + u % 5)]
    # a broken row: backslash-escaped quotes give the wrong field count, as in the real dump
    broken = ['"B11";"Title \\"Eleven\\" Rock &amp; Roll";"Someone";"2001";"P";"s";"m";"l"']
    raw = write_book_raw(tmp_path, ratings, {k: v for k, v in books.items() if k != "B11"}, broken)
    return data.prepare_book(raw, book(**params))


def test_book_drops_broken_rows_and_counts_them(tmp_path):
    splits, report = book_fixture(tmp_path)
    assert report["books_rows_dropped_broken_field_count"] == 1
    assert report["books_broken_lines"] == [13]
    rows = pl.concat(splits.values())
    assert "B11" not in rows["target_item_id"].to_list()
    assert all("B11" not in h for h in rows["history_item_ids"].to_list())


def test_book_users_history_and_split(tmp_path):
    splits, report = book_fixture(tmp_path, n_users=40)
    rows = pl.concat(splits.values())
    # each user has exactly one sample, only users with >= 4 joined ratings survive
    assert rows["user"].n_unique() == rows.height == report["users_kept"]
    n = rows.height
    assert splits["train"].height == int(n * 0.8)
    assert all(3 <= len(h) <= 10 for h in rows["history_item_ids"].to_list())
    first = rows.row(0, named=True)
    assert first["target_text"] == '"Title %s" written by Author %d' % (
        first["target_item_id"][1:],
        int(first["target_item_id"][1:]) % 3,
    )
    assert first["output"] == ("Yes." if first["rating"] > 5 else "No.")


def test_book_zero_rating_param(tmp_path):
    keep, r_keep = book_fixture(tmp_path / "a")
    drop, r_drop = book_fixture(tmp_path / "b", drop_implicit_zeros=True)
    assert r_keep["implicit_zero_ratings"] == r_drop["implicit_zero_ratings"] > 0
    assert r_drop["ratings_joined"] < r_keep["ratings_joined"]

    def all_ratings(splits):
        rows = pl.concat(splits.values())
        return rows["rating"].to_list() + rows["history_ratings"].explode().to_list()

    assert 0 not in all_ratings(drop)
    assert 0 in all_ratings(keep)


def test_book_is_deterministic_for_a_seed(tmp_path):
    a, _ = book_fixture(tmp_path / "a", n_users=60)
    b, _ = book_fixture(tmp_path / "b", n_users=60)
    c, _ = book_fixture(tmp_path / "c", n_users=60, seed=1)
    for split in a:
        assert a[split].equals(b[split])
    assert not a["train"].equals(c["train"])


def test_book_missing_column(tmp_path):
    raw = write_book_raw(tmp_path, [("u1", "B1", 5)], {"B1": ("T", "A")})
    path = raw / "bookcrossing/BX-Book-Ratings.csv"
    path.write_bytes(b'"User-ID";"ISBN"\r\n"u1";"B1"\r\n')
    with pytest.raises(DataError, match=r"BX-Book-Ratings.csv:1: missing column 'Book-Rating'"):
        data.prepare_book(raw, book())


def test_prepare_writes_identical_bytes_twice(tmp_path, monkeypatch):
    write_movie_raw(tmp_path / "raw", [(u, i, 1 + (u * i) % 5, i) for u in range(1, 4) for i in range(1, 10)])
    monkeypatch.chdir(tmp_path)
    params = project(split=[0.5, 0.25, 0.25])
    data.prepare("movie", params, raw=Path("raw"))
    first = paths.split_path("movie", "train").read_bytes()
    data.prepare("movie", params, raw=Path("raw"))
    assert paths.split_path("movie", "train").read_bytes() == first
    assert json.loads(paths.report_path("movie").read_text())["split_rows"]["train"] > 0


def test_fetch_verifies_sha256_and_leaves_nothing_on_mismatch(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "x").mkdir(parents=True)
    (mirror / "x/a.txt").write_bytes(b"hello")
    good = RawFile("x/a.txt", hashlib.sha256(b"hello").hexdigest(), "http://invalid")
    out = tmp_path / "raw"
    data.fetch(mirror, out, [good])
    assert (out / "x/a.txt").read_bytes() == b"hello"

    bad = RawFile("x/a.txt", "0" * 64, "http://invalid")
    (out / "x/a.txt").unlink()
    with pytest.raises(
        DataError, match=rf"sha256 {good.sha256[:12]}… of x/a.txt is not the pinned release's \(0{{12}}…\)"
    ):
        data.fetch(mirror, out, [bad])
    assert list((out / "x").iterdir()) == []


def test_fetch_downloads_from_the_official_zip_when_the_mirror_lacks_a_file(tmp_path):
    archive = tmp_path / "release.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("ml-100k/u.genre", b"unknown|0\n")
    raw = RawFile("ml-100k/u.genre", hashlib.sha256(b"unknown|0\n").hexdigest(), archive.as_uri(), "ml-100k/u.genre")
    data.fetch(tmp_path / "no-mirror", tmp_path / "raw", [raw])
    assert (tmp_path / "raw/ml-100k/u.genre").read_bytes() == b"unknown|0\n"

    missing = RawFile("ml-100k/u.item", "0" * 64, (tmp_path / "nowhere.zip").as_uri(), "ml-100k/u.item")
    with pytest.raises(DataError, match="not in the mirror and download from"):
        data.fetch(tmp_path / "no-mirror", tmp_path / "raw", [missing])


def test_original_json_round_trip_and_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = write_movie_raw(Path("raw"), [(1, i, 1 + i % 5, i) for i in range(1, 10)])
    data.prepare("movie", project(split=[0.5, 0.25, 0.25]), raw=raw)
    n = data.export_original_json("movie", "train", Path("out.json"))
    text = Path("out.json").read_text()
    assert text.startswith('[\n    {\n        "instruction": ')
    back = data.read_original_json(Path("out.json"))
    assert back.height == n and back.equals(
        pl.read_parquet(paths.split_path("movie", "train"), columns=["instruction", "input", "output"])
    )

    Path("bad.json").write_text('[{"instruction": "a", "input": ""}]')
    with pytest.raises(DataError, match=r"bad.json: record 0 has no string field 'output'"):
        data.read_original_json(Path("bad.json"))
    Path("broken.json").write_text('[\n{"instruction": }\n]')
    with pytest.raises(DataError, match=r"broken.json:2: invalid JSON"):
        data.read_original_json(Path("broken.json"))


def test_k_shot_draws(tmp_path):
    trains = {d: pl.DataFrame({"domain": [d] * 50, "i": list(range(50))}) for d in DOMAINS}
    a = sampling.k_shot(trains, "movie", 16, 3)
    assert a.height == 16 and a["i"].n_unique() == 16
    assert a.equals(sampling.k_shot(trains, "movie", 16, 3))
    assert not a.equals(sampling.k_shot(trains, "movie", 16, 4))
    both = sampling.k_shot(trains, "both", 16, 3)
    assert both.height == 32 and both.filter(pl.col("domain") == "movie").equals(a)
    with pytest.raises(ValueError, match="K=64 is larger than the book train split \\(50 rows\\)"):
        sampling.k_shot(trains, "book", 64, 0)


def test_prepare_alpaca_refuses_an_empty_list(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "raw/alpaca").mkdir(parents=True)
    (tmp_path / "raw/alpaca/alpaca_data.json").write_text("[]\n")
    from tallrec.config import Params

    with pytest.raises(DataError) as e:
        data.prepare("alpaca", Params(), raw=Path("raw"))
    assert str(e.value) == str(Path("raw/alpaca/alpaca_data.json")) + ": no records"
    assert not paths.processed_dir("alpaca").exists()


# The child runs `prepare movie` and pauses at one point until it is killed with SIGKILL.
KILLED_PREPARE = r"""
import json, os, sys, time
from pathlib import Path
from tallrec import data, io
from tallrec.config import Params, with_changes

marker, point, params = Path(sys.argv[1]), sys.argv[2], with_changes(Params(), json.loads(sys.argv[3]))
folder = Path("data/processed/movie")

def pause_after(real, when):
    def wrapper(*args):
        out = real(*args)
        if when(out, *args) and not marker.exists():
            marker.write_text(point)
            time.sleep(300)
        return out
    return wrapper

if point == "between_files":  # train.parquet written, valid.parquet not yet
    data.write_parquet = pause_after(data.write_parquet, lambda out, df, path: Path(path).name == "train.parquet")
else:  # the swap: right after the first rename that moves the old folder
    if point == "swap_without_exchange":
        io._exchange = lambda a, b: False
    elif hasattr(io, "_exchange"):
        io._exchange = pause_after(io._exchange, lambda out, a, b: out)
    os.replace = pause_after(os.replace, lambda out, src, dst: Path(src) == folder)
data.prepare("movie", params, raw=Path("raw"))
"""


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _leftovers(processed: Path) -> list[str]:
    return sorted(str(p.relative_to(processed)) for p in processed.rglob(".*"))


@pytest.mark.parametrize("point", ["between_files", "swap", "swap_without_exchange"])
def test_prepare_killed_midway_leaves_a_complete_folder(point, tmp_path, monkeypatch):
    """SIGKILL while prepare writes its folder: the old folder stays whole (or, killed after the
    one-step swap, the new one is whole); the next run cleans up and gives the complete new folder."""
    from tallrec.config import Params, with_changes

    ratings = [(u, i, 1 + (u * i) % 5, i) for u in range(1, 4) for i in range(1, 10)]
    changes = {"data": {"movie": {**MOVIE_PARAMS, "split": [0.8, 0.1, 0.1]}}}
    old_params = with_changes(Params(), {"data": {"movie": {**MOVIE_PARAMS, "split": [0.5, 0.25, 0.25]}}})
    new_params = with_changes(Params(), changes)
    for where in ("ref", "work"):
        write_movie_raw(tmp_path / where / "raw", ratings)
    monkeypatch.chdir(tmp_path / "ref")
    data.prepare("movie", new_params, raw=Path("raw"))
    new = _tree(paths.processed_dir("movie"))
    monkeypatch.chdir(tmp_path / "work")
    data.prepare("movie", old_params, raw=Path("raw"))
    folder, processed = paths.processed_dir("movie"), paths.PROCESSED
    (folder / ".valid.parquet.x1y2.tmp").write_bytes(b"half a file")  # what the old per-file writes left
    (processed / ".movie.old").mkdir()  # and what a killed folder swap leaves beside
    (processed / ".movie.old/train.parquet").write_bytes(b"stale")
    (processed / ".movie.a1b2.tmp").write_bytes(b"stale")
    old = _tree(folder)
    assert old != new

    if point == "swap":
        a, b = tmp_path / "probe-a", tmp_path / "probe-b"
        a.mkdir(), b.mkdir()
        exchange = getattr(io, "_exchange", None)
        if exchange is not None and not exchange(a, b):
            pytest.skip("this file system cannot swap two folders in one step")
    marker = tmp_path / "paused"
    env = {**os.environ, "TALLREC_PROGRESS": "0"}
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_PREPARE, str(marker), point, json.dumps(changes)], env=env, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if not marker.exists():
        child.kill()
        pytest.fail(f"the child never reached {point!r}: {child.communicate()[1].decode()[-2000:]}")
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL

    if point == "between_files":
        assert _tree(folder) == old
    elif point == "swap":
        assert _tree(folder) == new  # swapped in one step: never missing, never mixed
    else:  # two renames, killed between them: the folder is missing; the next run puts the old one back first
        assert not folder.exists() and _tree(processed / ".movie.old") == old
        io.remove_stale(folder)
        assert _tree(folder) == old
        assert _leftovers(processed) == ["movie/.valid.parquet.x1y2.tmp"]  # inside the old folder, as it was

    data.prepare("movie", new_params, raw=Path("raw"))
    assert _tree(folder) == new
    assert _leftovers(processed) == []


@pytest.mark.parametrize("writer", ["atomic_dir", "atomic_path"])
def test_what_a_killed_writer_left_is_removed_by_the_next_one_and_git_ignores_it(tmp_path, writer):
    """A killed `sample` left data/processed/.shots.<random>.tmp/ (2.5 MB of licensed rows) that later
    runs kept and `git add -A` would have committed. Every atomic writer clears its own leftovers first,
    and .gitignore covers every temporary name they make."""
    target = tmp_path / "processed" / "shots"
    left = [tmp_path / "processed" / ".shots.k3j9x_ab.tmp", tmp_path / "processed" / ".shots.q1.tmp"]
    left[0].mkdir(parents=True)
    (left[0] / "movie.parquet").write_bytes(b"licensed rows")
    left[1].write_bytes(b"half a file")
    other = tmp_path / "processed" / ".movie.zz.tmp"  # another output's temporary: not this writer's to remove
    other.write_bytes(b"x")
    if writer == "atomic_dir":
        with io.atomic_dir(target) as tmp:
            (tmp / "a").write_text("new")
    else:
        with io.atomic_path(target) as tmp:
            tmp.write_text("new")
    assert not any(p.exists() for p in left) and other.exists()
    names = [
        "data/processed/.shots.k3j9x_ab.tmp/movie.parquet",
        "data/processed/.shots.q1.tmp",
        "reports/.figure3.png.x1.tmp",
        "models/rec/m/.tallrec_movie_k64_seed0.old/adapter_model.safetensors",
    ]
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *names], cwd=Path(__file__).parents[1], capture_output=True, text=True
    )
    assert ignored.stdout.split() == names


@pytest.mark.parametrize("damage", ["truncate", "reencode"])
def test_the_prepare_stage_refuses_raw_files_that_fetch_would_refuse(tmp_path, monkeypatch, damage):
    """Half of a raw file gave fewer rows with rc 0, u.item re-encoded as UTF-8 garbled titles: the
    prepare stage checks the pinned sha256 of every raw file it reads, as fetch does."""
    from tallrec.stages import prepare as stage

    monkeypatch.chdir(tmp_path)
    params = Params()
    data.fetch(Path(__file__).parents[1] / params.data.mirror, paths.RAW, data.RAW_FILES["movie"])
    item = paths.RAW / "ml-100k" / "u.item"
    raw = item.read_bytes()
    item.write_bytes(raw[: len(raw) // 2] if damage == "truncate" else raw.decode("latin-1").encode("utf-8"))
    with pytest.raises(DataError, match=r"data/raw/ml-100k/u.item: sha256 .* is not the pinned release's"):
        stage.main(params, "movie")
    assert not paths.processed_dir("movie").exists()
