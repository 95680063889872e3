"""tallrec.serving (`tallrec score` and `tallrec rank`) on a tiny LoRA adapter built in the test."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tallrec import paths
from tallrec.cli import app
from tallrec.prompts import RecTemplate, alpaca_prompt
from tallrec.scoring import score_prompts

runner = CliRunner()
GOOD = [
    {
        "liked": ['"Toy Story (1995)"', '"Heat (1995)"'],
        "disliked": ['"Alpha Beta"'],
        "target": '"Gamma (1999)"',
        "user": 7,
    },
    {"liked": [], "disliked": [], "target": '"Heat (1995)"'},
    {
        "liked": ['"Delta" written by Jane Austen'],
        "disliked": [],
        "target": '"Epsilon" written by Jane Austen',
        "domain": "book",
    },
]


@pytest.fixture(scope="module")
def adapter(tiny_backbone, tmp_path_factory):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_backbone, dtype=torch.float32)
    peft = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    folder = tmp_path_factory.mktemp("adapter")
    peft.save_pretrained(folder)
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_backbone)
    return folder, peft.eval()


def expected(peft, tok, records):
    prompts = []
    for r in records:
        t = RecTemplate.from_params(r.get("domain", "movie"))
        prompts.append(alpaca_prompt(t.instruction, t.input(r["liked"], r["disliked"], r["target"])))
    return score_prompts(peft, tok, prompts, batch_size=8, progress=False)


def run(*args):
    return runner.invoke(app, [*args, "--dtype", "fp32", "--params", str(paths.PARAMS)])


def test_score_adds_p_yes_to_every_line(adapter, tiny_backbone, tmp_path):
    from transformers import AutoTokenizer

    folder, peft = adapter
    src = tmp_path / "users.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in GOOD))
    result = run("score", "--adapter", str(folder), "--input", str(src))
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in (tmp_path / "users.scored.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in x.items() if k != "p_yes"} for x in lines] == GOOD
    want = expected(peft, AutoTokenizer.from_pretrained(tiny_backbone), GOOD)
    np.testing.assert_allclose([x["p_yes"] for x in lines], want, atol=1e-4)  # merged LoRA == peft model


BAD = (
    json.dumps(GOOD[0])
    + "\n"
    + "{not json\n"
    + json.dumps({"liked": [], "disliked": []})
    + "\n"
    + json.dumps({**GOOD[1], "target": "  "})
    + "\n"
    + "\n"
    + json.dumps(GOOD[1])
    + "\n"
)


def test_bad_lines_skipped_and_reported(adapter, tmp_path):
    src, out = tmp_path / "bad.jsonl", tmp_path / "out.jsonl"
    src.write_text(BAD)
    result = run("score", "--adapter", str(adapter[0]), "--input", str(src), "--output", str(out), "--on-error", "skip")
    assert result.exit_code == 0, result.output
    for line, problem in ((2, "not JSON"), (3, "missing field 'target'"), (4, "empty target")):
        assert f"bad.jsonl:{line}: {problem}" in result.output
    assert [json.loads(x)["target"] for x in out.read_text().splitlines()] == [GOOD[0]["target"], GOOD[1]["target"]]


def test_bad_line_fails_with_one_line_and_writes_nothing(adapter, tmp_path):
    src, out = tmp_path / "bad.jsonl", tmp_path / "out.jsonl"
    src.write_text(BAD)
    result = run("score", "--adapter", str(adapter[0]), "--input", str(src), "--output", str(out), "--on-error", "fail")
    assert result.exit_code == 1
    assert "bad.jsonl:2: not JSON" in result.output and "Traceback" not in result.output
    assert not out.exists() and list(tmp_path.iterdir()) == [src]  # no temp file left behind either


def test_rank_prints_best_first(adapter, tmp_path):
    history = tmp_path / "history.json"
    history.write_text(json.dumps({"liked": ['"Toy Story (1995)"'], "disliked": ['"Heat (1995)"']}))
    candidates = tmp_path / "candidates.txt"
    candidates.write_text(
        "\n".join(['"Alpha"', '"Beta (1990)"', '"Gamma"', '"Delta Epsilon"', '"Toy Story (1995)"']) + "\n"
    )
    result = run(
        "rank", "--adapter", str(adapter[0]), "--history", str(history), "--candidates", str(candidates), "--top", "3"
    )
    assert result.exit_code == 0, result.output
    rows = re.findall(r"│\s*(\d+)\s*│\s*([01]\.\d{4})\s*│", result.output)
    assert [int(r) for r, _ in rows] == [1, 2, 3]
    scores = [float(p) for _, p in rows]
    assert scores == sorted(scores, reverse=True)
    assert "top 3 of 5 movie candidates" in result.output


# ---------------------------------------------------------------- hostile input: one line, before the model loads


@pytest.fixture
def no_model(monkeypatch):
    """Fail loudly if a command loads a model: every check below must happen before that."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("tallrec.serving.load_for_scoring", refuse)


def one_line_error(result) -> str:
    """The command ended with exit 1 and exactly one line, `error: ...` (no traceback, no model load)."""
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), (result.output, result.exception)
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.mark.parametrize(
    "how", ["same", "relative", "dotdot", "symlink", "symlinked_dir", "input_is_symlink", "hardlink"]
)
def test_score_refuses_output_that_is_the_input(no_model, tmp_path, monkeypatch, how):
    src = tmp_path / "users.jsonl"
    text = json.dumps(GOOD[1]) + "\n{not json\n"
    src.write_text(text)
    inp, out = src, src
    if how == "relative":
        monkeypatch.chdir(tmp_path)
        inp = "users.jsonl"
    elif how == "dotdot":
        (tmp_path / "sub").mkdir()
        out = tmp_path / "sub" / ".." / "users.jsonl"
    elif how == "symlink":
        out = tmp_path / "link.jsonl"
        out.symlink_to(src)
    elif how == "symlinked_dir":
        (tmp_path / "d").symlink_to(tmp_path, target_is_directory=True)
        out = tmp_path / "d" / "users.jsonl"
    elif how == "input_is_symlink":
        inp = tmp_path / "link.jsonl"
        inp.symlink_to(src)
    elif how == "hardlink":
        out = tmp_path / "hard.jsonl"
        out.hardlink_to(src)
    result = run("score", "--adapter", "unused", "--input", str(inp), "--output", str(out), "--on-error", "skip")
    line = one_line_error(result)
    assert str(inp) in line and str(out) in line
    assert src.read_text() == text


NOT_UTF8 = (
    json.dumps(GOOD[1]).encode()
    + b"\n"
    + b'{"liked": [], "disliked": [], "target": "caf\xe9"}\n'
    + json.dumps(GOOD[0]).encode()
    + b"\n"
)


def test_score_non_utf8_line_is_skipped_with_its_location(adapter, tmp_path):
    src, out = tmp_path / "latin1.jsonl", tmp_path / "out.jsonl"
    src.write_bytes(NOT_UTF8)
    result = run("score", "--adapter", str(adapter[0]), "--input", str(src), "--output", str(out), "--on-error", "skip")
    assert result.exit_code == 0, result.output
    assert f"skipped: {src}:2: not valid utf-8 (byte 0xe9)" in result.output
    assert [json.loads(x)["target"] for x in out.read_text().splitlines()] == [GOOD[1]["target"], GOOD[0]["target"]]


def test_score_non_utf8_line_fails_with_its_location(no_model, tmp_path):
    src, out = tmp_path / "latin1.jsonl", tmp_path / "out.jsonl"
    src.write_bytes(NOT_UTF8)
    result = run("score", "--adapter", "unused", "--input", str(src), "--output", str(out), "--on-error", "fail")
    assert one_line_error(result) == f"error: {src}:2: not valid utf-8 (byte 0xe9)"
    assert not out.exists()


# written literally: JSON accepts a lone surrogate escape, no tokenizer or UTF-8 file can take it
SURROGATES = (
    "\n".join(
        [
            json.dumps({**GOOD[1], "target": '"\\ud83d\\ude00 (1999)"'}).replace("\\\\", "\\"),  # a proper pair: fine
            '{"liked": [], "disliked": [], "target": "\\ud800"}',
            '{"liked": ["\\udfff"], "disliked": [], "target": "x"}',
            '{"liked": [], "disliked": [], "target": "x", "user": {"name": ["\\ud800"]}}',
            '{"liked": [], "disliked": [], "target": "x", "\\udc00": 1}',
        ]
    )
    + "\n"
)


def test_score_lone_surrogate_is_a_bad_line(adapter, tmp_path):
    src, out = tmp_path / "surrogates.jsonl", tmp_path / "out.jsonl"
    src.write_text(SURROGATES)
    result = run("score", "--adapter", str(adapter[0]), "--input", str(src), "--output", str(out), "--on-error", "skip")
    assert result.exit_code == 0, result.output
    for n, where in ((2, "field 'target'"), (3, "field 'liked'"), (4, "field 'user'"), (5, "a field name")):
        assert re.search(
            rf"{re.escape(str(src))}:{n}: not valid unicode: lone surrogate \\u[0-9a-f]{{4}} in {where}", result.output
        ), result.output
    assert [json.loads(x)["target"] for x in out.read_text(encoding="utf-8").splitlines()] == ['"\U0001f600 (1999)"']


def test_score_lone_surrogate_fails_before_the_model_loads(no_model, tmp_path):
    src, out = tmp_path / "surrogates.jsonl", tmp_path / "out.jsonl"
    src.write_text(SURROGATES)
    result = run("score", "--adapter", "unused", "--input", str(src), "--output", str(out), "--on-error", "fail")
    assert one_line_error(result) == f"error: {src}:2: not valid unicode: lone surrogate \\ud800 in field 'target'"
    assert not out.exists()


def test_score_all_lines_bad_says_why(no_model, tmp_path):
    src = tmp_path / "allbad.jsonl"
    src.write_text(
        "{not json\n"
        + json.dumps({"liked": [], "disliked": []})
        + "\n\n"
        + json.dumps({**GOOD[1], "target": ""})
        + "\n"
        + "[]\n"
        + json.dumps({**GOOD[1], "domain": "music"})
        + "\n"
    )
    result = run("score", "--adapter", "unused", "--input", str(src), "--on-error", "skip")
    line = one_line_error(result)
    assert line.startswith(f"error: {src}: no good lines to score (5 bad: ")
    for n, problem in ((1, "not JSON"), (2, "missing field 'target'"), (4, "empty target")):
        assert f"{src}:{n}: {problem}" in line
    assert "2 more" in line


def test_rank_drops_duplicate_candidates(adapter, tmp_path):
    history = tmp_path / "history.json"
    history.write_text(json.dumps({"liked": ['"Toy Story (1995)"'], "disliked": []}))
    items = ['"Alpha"', '"Beta (1990)"', '"Alpha"', '"Gamma"', '"Beta (1990)"', '"Alpha"']
    for candidates in (tmp_path / "candidates.txt", tmp_path / "candidates.json"):
        candidates.write_text(json.dumps(items) if candidates.suffix == ".json" else "\n".join(items) + "\n")
        result = run("rank", "--adapter", str(adapter[0]), "--history", str(history), "--candidates", str(candidates))
        assert result.exit_code == 0, result.output
        rows = re.findall(r"│\s*\d+\s*│\s*[01]\.\d{4}\s*│\s*(\S.*?)\s*│", result.output)
        assert sorted(rows) == sorted(set(items)), result.output
        assert "top 3 of 3 movie candidates" in result.output
        assert "dropped 3 duplicate candidates" in result.output


def test_score_and_rank_print_user_texts_as_they_are(adapter, tmp_path):
    """Texts from the user's files are not rich markup: "[/x]" neither crashes the output nor vanishes."""
    src, out = tmp_path / "users.jsonl", tmp_path / "[b]out.jsonl"
    src.write_text(json.dumps(GOOD[1]) + "\n" + json.dumps({**GOOD[1], "domain": "[/x]"}) + "\n")
    result = run("score", "--adapter", str(adapter[0]), "--input", str(src), "--output", str(out))
    assert result.exit_code == 0, (result.output, result.exception)
    assert f"{src}:2: unknown domain '[/x]'" in result.output and str(out) in result.output
    history, candidates = tmp_path / "history.json", tmp_path / "candidates.txt"
    history.write_text(json.dumps({"liked": [], "disliked": []}))
    candidates.write_text('"[/x] Alpha"\n"[bold]Beta"\n')
    result = run("rank", "--adapter", str(adapter[0]), "--history", str(history), "--candidates", str(candidates))
    assert result.exit_code == 0, (result.output, result.exception)
    assert '"[/x] Alpha"' in result.output and '"[bold]Beta"' in result.output


def test_score_deeply_nested_line_is_a_bad_line(no_model, tmp_path):
    src = tmp_path / "deep.jsonl"
    src.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    result = run("score", "--adapter", "unused", "--input", str(src), "--on-error", "fail")
    assert one_line_error(result) == f"error: {src}:1: not JSON (nested too deeply)"


def test_score_refuses_a_folder_as_output(no_model, tmp_path):
    src, out = tmp_path / "users.jsonl", tmp_path / "out"
    src.write_text(json.dumps(GOOD[1]) + "\n")
    out.mkdir()
    result = run("score", "--adapter", "unused", "--input", str(src), "--output", str(out))
    assert str(out) in one_line_error(result)


def test_rank_lone_surrogate_fails_before_the_model_loads(no_model, tmp_path):
    history, candidates = tmp_path / "history.json", tmp_path / "candidates.json"
    history.write_text(json.dumps({"liked": [], "disliked": []}))
    candidates.write_text('["\\"Alpha\\"", "\\udc00"]')
    result = run("rank", "--adapter", "unused", "--history", str(history), "--candidates", str(candidates))
    assert one_line_error(result) == f"error: {candidates}: item 2: not valid unicode: lone surrogate \\udc00"
    history.write_text('{"liked": ["\\ud800"], "disliked": []}')
    result = run("rank", "--adapter", "unused", "--history", str(history), "--candidates", str(candidates))
    assert one_line_error(result) == f"error: {history}: not valid unicode: lone surrogate \\ud800 in field 'liked'"


# ------------------------------------------------------------------ prompts longer than the model (issue 11, item 16)


def test_a_too_long_history_loses_its_oldest_items_and_says_so(adapter, tmp_path):
    """The tiny model's context is 1,024 positions: a 100 KB title in an old history item would be
    scored silently past it. The oldest items go until the prompt fits; a target alone too long is a bad line."""
    folder, _ = adapter
    huge = '"' + "Alpha Beta " * 10_000 + '(1995)"'
    lines = [
        {"liked": [huge, '"Heat (1995)"'], "disliked": ['"Alpha Beta"'], "target": '"Gamma (1999)"'},
        {"liked": ['"Heat (1995)"'], "disliked": [], "target": huge},
        GOOD[0],
    ]
    src = tmp_path / "long.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in lines))
    result = run("score", "--adapter", str(folder), "--input", str(src))
    assert result.exit_code == 0, result.output
    assert re.search(r"long\.jsonl:2: the target alone makes a prompt of \d+ tokens", result.output)
    assert "1 prompts too long for the model lost their oldest history items" in " ".join(result.output.split())
    out = [json.loads(x) for x in (tmp_path / "long.scored.jsonl").read_text().splitlines()]
    assert [o["target"] for o in out] == ['"Gamma (1999)"', GOOD[0]["target"]]
    assert out[0]["history_dropped"] == 1 and "history_dropped" not in out[1]


@pytest.mark.parametrize("quantize", ["none", "8bit"])
def test_the_console_shows_our_lines_not_library_noise(adapter, tmp_path, quantize):
    """No transformers tqdm bars, FutureWarnings or bitsandbytes notes: what `make repro` shows is ours."""
    import subprocess
    import sys

    folder, _ = adapter
    src = tmp_path / "users.jsonl"
    src.write_text(json.dumps(GOOD[0]) + "\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tallrec",
            "score",
            "--adapter",
            str(folder),
            "--input",
            str(src),
            "--quantize",
            quantize,
            "--device",
            "cpu",  # on a CUDA host the 8-bit path would otherwise run on the GPU
            "--params",
            str(paths.PARAMS.resolve()),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert lines == [f"scored 1 lines into {tmp_path / 'users.scored.jsonl'}"], lines


def test_library_tqdm_bars_are_off_in_every_stage():
    """transformers' GGUF loader (base_model) calls tqdm.auto directly, past its own progress switch."""
    import subprocess
    import sys

    code = (
        "from tallrec.runtime import quiet_libraries; quiet_libraries(); "
        "from tqdm.auto import tqdm; list(tqdm(range(3), desc='Converting'))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "Converting" not in done.stderr, done.stderr


def test_rank_shows_the_best_k_of_n_in_order(adapter, tmp_path):
    """Sorted output is not enough: the shown items must be the k best of the n, as `score` scores them."""
    liked, disliked = ['"Toy Story (1995)"'], ['"Heat (1995)"']
    items = [
        '"Alpha"',
        '"Beta (1990)"',
        '"Gamma"',
        '"Delta Epsilon"',
        '"Toy Story (1995)"',
        '"Epsilon Alpha"',
        '"Heat"',
    ]
    history, candidates, users = tmp_path / "history.json", tmp_path / "candidates.txt", tmp_path / "users.jsonl"
    history.write_text(json.dumps({"liked": liked, "disliked": disliked}))
    candidates.write_text("\n".join(items) + "\n")
    users.write_text("".join(json.dumps({"liked": liked, "disliked": disliked, "target": t}) + "\n" for t in items))
    scored = run("score", "--adapter", str(adapter[0]), "--input", str(users), "--output", str(tmp_path / "s.jsonl"))
    assert scored.exit_code == 0, scored.output
    p_yes = {
        json.loads(line)["target"]: json.loads(line)["p_yes"]
        for line in (tmp_path / "s.jsonl").read_text().splitlines()
    }
    assert len(set(p_yes.values())) == len(items)  # no ties: one right answer
    best = sorted(items, key=lambda t: -p_yes[t])[:3]
    result = run(
        "rank", "--adapter", str(adapter[0]), "--history", str(history), "--candidates", str(candidates), "--top", "3"
    )
    assert result.exit_code == 0, result.output
    shown = re.findall(r"│\s*\d+\s*│\s*([01]\.\d{4})\s*│\s*(\S.*?)\s*│", result.output)
    assert [item for _, item in shown] == best
    assert [float(p) for p, _ in shown] == pytest.approx([p_yes[t] for t in best], abs=1e-4)


@pytest.mark.parametrize("where", ["parent_is_a_file", "read_only_folder"])
def test_score_checks_its_output_location_before_loading_the_model(no_model, tmp_path, where):
    """A read-only output folder or a parent that is a file failed only after the model had scored every line."""
    import os

    src = tmp_path / "users.jsonl"
    src.write_text(json.dumps(GOOD[0]) + "\n")
    if where == "parent_is_a_file":
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "scored.jsonl"
    else:
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o555)
        out = tmp_path / "ro" / "scored.jsonl"
        if os.access(tmp_path / "ro", os.W_OK):  # root writes anywhere: make it a file's child instead
            (tmp_path / "ro").chmod(0o755)
            (tmp_path / "ro" / "file").write_text("x")
            out = tmp_path / "ro" / "file" / "scored.jsonl"
    result = run("score", "--adapter", "whatever", "--input", str(src), "--output", str(out))
    assert result.exit_code == 1 and "the model was loaded" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "--output" in lines[0] and "cannot be written" in lines[0], result.output


def test_a_bom_is_accepted_and_our_history_dropped_overwrites_the_users(adapter, tmp_path):
    src, out = tmp_path / "users.jsonl", tmp_path / "out.jsonl"
    src.write_bytes(b"\xef\xbb\xbf" + (json.dumps({**GOOD[0], "history_dropped": 7}) + "\n").encode())
    result = run("score", "--adapter", str(adapter[0]), "--input", str(src), "--output", str(out))
    assert result.exit_code == 0, result.output
    (line,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert "p_yes" in line and "history_dropped" not in line  # nothing was dropped: the user's 7 would lie


def test_an_adapters_relative_base_is_found_from_any_working_directory(tmp_path, monkeypatch):
    """base_model_name_or_path is written relative to the project (models/base/<name>): it was resolved
    against the current folder, so `tallrec score` run from elsewhere lost the backbone."""
    from tallrec.serving import base_of_adapter

    project = tmp_path / "project"
    adapter = project / "models" / "rec" / "m" / "tallrec_movie_k64_seed0"
    adapter.mkdir(parents=True)
    lora = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]}
    (adapter / "adapter_config.json").write_text(json.dumps({**lora, "base_model_name_or_path": "models/base/mine"}))
    (project / "models" / "base" / "mine").mkdir(parents=True)
    (project / "models" / "base" / "mine" / "config.json").write_text("{}")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert Path(base_of_adapter(adapter)).resolve() == (project / "models" / "base" / "mine").resolve()


# ------------------------------------------------ unusable paths, adapter folders and devices (issue 24, item 7)


@pytest.fixture
def no_base(monkeypatch):
    """Fail loudly if a backbone's weights load: the adapter and the device are checked before that."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("tallrec.model.load_base", refuse)


def a_fifo(tmp_path: Path, monkeypatch) -> Path:
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    return fifo


def an_unreadable_file(tmp_path: Path, monkeypatch) -> Path:
    import os

    path = tmp_path / "secret.jsonl"
    path.write_text(json.dumps(GOOD[1]) + "\n")
    path.chmod(0)
    if os.access(path, os.R_OK):  # root reads any file: the permission check is then shown what chmod would do
        access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == path else access(p, mode))
    return path


UNUSABLE = {
    "folder": (lambda tmp_path, _: tmp_path, "is a folder, not a file"),
    "missing": (lambda tmp_path, _: tmp_path / "nope.jsonl", "file not found"),
    "fifo": (a_fifo, "not a regular file"),
    "unreadable": (an_unreadable_file, "cannot be read (no read permission)"),
}


@pytest.mark.parametrize("what", ["--input", "--history", "--candidates", "--params"])
@pytest.mark.parametrize("kind", sorted(UNUSABLE))
def test_an_unusable_input_path_is_one_line(no_model, tmp_path, monkeypatch, what, kind):
    """A folder as --input or --history was an IsADirectoryError traceback (41 and 47 lines)."""
    make, problem = UNUSABLE[kind]
    bad = make(tmp_path, monkeypatch)
    history, candidates = tmp_path / "history.json", tmp_path / "candidates.txt"
    history.write_text(json.dumps({"liked": [], "disliked": []}))
    candidates.write_text('"Alpha"\n')
    if what == "--input":
        args = ["score", "--input", str(bad), "--output", str(tmp_path / "out.jsonl")]
    elif what == "--params":
        good = tmp_path / "users.jsonl"
        good.write_text(json.dumps(GOOD[1]) + "\n")
        args = ["score", "--input", str(good), "--params", str(bad)]
    else:
        args = ["rank", "--history", str(history), "--candidates", str(candidates), what, str(bad)]
    if what == "--params":  # run() names the project's params file itself
        result = runner.invoke(app, [*args, "--adapter", "unused", "--dtype", "fp32"])
        if kind == "missing":
            problem = "params file not found (run from the project root, or pass --params)"
    else:
        result = run(*args, "--adapter", "unused")
    assert one_line_error(result) == f"error: {bad}: {problem}"


def _edit_config(folder: Path, edit) -> None:
    path = folder / "adapter_config.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


def _edit_weights(folder: Path, edit) -> None:
    from safetensors.torch import load_file, save_file

    path = folder / "adapter_model.safetensors"
    tensors = edit(load_file(path))
    save_file(tensors, path)


def _first(tensors: dict, part: str) -> str:
    return next(k for k in sorted(tensors) if part in k)


def _pickled(folder: Path) -> None:
    from safetensors.torch import load_file

    weights = folder / "adapter_model.safetensors"
    torch.save(load_file(weights), folder / "adapter_model.bin")
    weights.unlink()


Q0 = "model.layers.0.self_attn.q_proj"
BROKEN_ADAPTERS = {
    "config_a_list": (
        lambda d: (d / "adapter_config.json").write_text("[1, 2]"),
        "adapter_config.json: expected a JSON object (peft's adapter config), not a list",
    ),
    "config_not_json": (
        lambda d: (d / "adapter_config.json").write_text("{oops"),
        "adapter_config.json:1: invalid JSON (Expecting property name enclosed in double quotes)",
    ),
    "config_without_peft_keys": (
        lambda d: _edit_config(d, lambda c: {"base_model_name_or_path": c["base_model_name_or_path"]}),
        "adapter_config.json: missing peft_type, r, lora_alpha, target_modules",
    ),
    "config_not_lora": (
        lambda d: _edit_config(d, lambda c: {**c, "peft_type": "IA3"}),
        "adapter_config.json: peft_type 'IA3': only LoRA adapters can be loaded",
    ),
    "config_bad_r": (
        lambda d: _edit_config(d, lambda c: {**c, "r": "four"}),
        "adapter_config.json: r must be a positive whole number, not 'four'",
    ),
    "weights_truncated": (
        lambda d: (d / "adapter_model.safetensors").write_bytes((d / "adapter_model.safetensors").read_bytes()[:2000]),
        "adapter_model.safetensors: not a valid safetensors file (Error while deserializing header: "
        "incomplete metadata, file not fully covered)",
    ),
    "weights_not_safetensors": (
        lambda d: (d / "adapter_model.safetensors").write_bytes(b"\xff" * 64),
        "adapter_model.safetensors: not a valid safetensors file (",
    ),
    "weights_absurd_shape": (
        lambda d: _edit_weights(d, lambda t: {**t, _first(t, "q_proj.lora_A"): torch.zeros(4, 999)}),
        f"adapter_model.safetensors: base_model.model.{Q0}.lora_A.weight has shape (4, 999); "
        f"the base's {Q0} (64 -> 64) with r=4 needs (4, 64)",
    ),
    "weights_other_r": (
        lambda d: _edit_config(d, lambda c: {**c, "r": 8}),
        f"adapter_model.safetensors: base_model.model.{Q0}.lora_A.weight has shape (4, 64); "
        f"the base's {Q0} (64 -> 64) with r=8 needs (8, 64)",
    ),
    "weights_for_another_module": (
        lambda d: _edit_weights(
            d, lambda t: {**t, "base_model.model.model.layers.9.mlp.x.lora_B.weight": torch.zeros(4, 4)}
        ),
        "adapter_model.safetensors: base_model.model.model.layers.9.mlp.x.lora_B.weight is for "
        "model.layers.9.mlp.x, a layer the base does not have",
    ),
    "weights_none": (
        lambda d: _edit_weights(d, lambda t: {}),
        "adapter_model.safetensors: holds no LoRA weights",
    ),
    "weights_only_a_pickle": (
        _pickled,
        "adapter_model.bin: a pickle; tallrec loads no pickles (code could run): save the adapter "
        "as adapter_model.safetensors",
    ),
    "weights_missing": (
        lambda d: (d / "adapter_model.safetensors").unlink(),
        "adapter_model.safetensors: file not found",
    ),
}


@pytest.mark.parametrize("how", sorted(BROKEN_ADAPTERS))
def test_a_broken_adapter_folder_is_one_line_before_the_model_loads(adapter, no_base, tmp_path, how):
    """Each was a traceback (38 to 60 lines: AttributeError, KeyError 'peft_type', SafetensorError,
    RuntimeError size mismatch), or, for a tensors-only pickle, loaded."""
    import shutil

    folder = tmp_path / "adapter"
    shutil.copytree(adapter[0], folder)
    mutate, problem = BROKEN_ADAPTERS[how]
    mutate(folder)
    src = tmp_path / "users.jsonl"
    src.write_text(json.dumps(GOOD[1]) + "\n")
    line = one_line_error(run("score", "--adapter", str(folder), "--input", str(src)))
    assert line.startswith(f"error: {folder}/{problem}"), line


def test_cuda_without_cuda_is_one_line_before_the_model_loads(adapter, no_model, tmp_path):
    """It was `AssertionError: Torch not compiled with CUDA enabled`, 58 lines, after the model had loaded."""
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    src = tmp_path / "users.jsonl"
    src.write_text(json.dumps(GOOD[1]) + "\n")
    for device in ("cuda", "cuda:0", "nonsense"):
        line = one_line_error(run("score", "--adapter", str(adapter[0]), "--input", str(src), "--device", device))
        assert f"--device {device}" in line, line
