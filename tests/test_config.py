"""params.yaml as one strict, typed tree: defaults, unknown keys, types, ranges, YAML errors, overrides."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tallrec.io import DataError
from tallrec.config import Params, ParamsError, Yaml12Loader, as_dict, load_params, set_param, with_changes

ROOT = Path(__file__).resolve().parents[1]
TEXT = (ROOT / "params.yaml").read_text()


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def changed(tmp_path, old: str, new: str) -> Path:
    assert TEXT.count(old) == 1, old
    return write(tmp_path, TEXT.replace(old, new))


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def test_the_committed_params_are_the_defaults():
    """One home of defaults: the typed tree's defaults are what params.yaml says, key for key."""
    assert load_params(ROOT / "params.yaml") == Params()
    assert yaml.load(TEXT, Loader=Yaml12Loader).keys() == as_dict(Params()).keys()


def test_a_params_file_rewritten_by_dvc_exp_run_reads_the_same(tmp_path):
    """`dvc exp run -S` rewrites params.yaml as YAML 1.2 (ruamel): keys like `yes` come out bare, which
    YAML 1.1 readers (PyYAML's default) take for booleans. Every experiment of a sweep failed so."""
    import shutil

    from dvc.utils.serialize import modify_yaml

    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    path.write_text(path.read_text().replace("  yes: Yes.", '  "yes": Yes.'))  # quoted going in: DVC drops it
    with modify_yaml(path) as raw:
        raw["rec_tune"]["ks"] = [16]
    assert '"yes"' not in path.read_text() and "  yes: Yes." in path.read_text()
    assert load_params(path) == with_changes(Params(), {"rec_tune": {"ks": [16]}})
    assert load_params(path).prompt.yes == "Yes." and load_params(path).prompt.no == "No."


@pytest.mark.parametrize(
    "old, new, message, on_line",
    [
        ("  lr: 1.0e-3 ", "  lrr: 1.0e-3 ", r"rec_tune.lrr: unknown key \(did you mean lr\?\)", "lrr:"),
        ("  ks: [64] ", "  ks: [0] ", r"rec_tune.ks: every value must be >= 1, not 0", "ks: [0]"),
        (
            "  ks: [16, 64, 256]\n  seeds: [0, 1, 2, 3, 4]\n\nbaselines",
            "  ks: [0]\n  seeds: [0, 1, 2, 3, 4]\n\nbaselines",
            r"sample.ks: every value must be >= 1, not 0",
            "ks: [0]",
        ),
        ("  test_size: null", "  test_size: 0", r"evaluate.test_size: 0 must be > 0 \(or null\)", "test_size: 0"),
        ("  lr: 1.0e-3 ", "  lr: -1 ", r"rec_tune.lr: -1 must be > 0", "lr: -1"),
        (
            "  train_domains: [movie] ",
            "  train_domains: [] ",
            r"rec_tune.train_domains: must not be empty",
            "train_domains: []",
        ),
        (
            "  train_domains: [movie] ",
            "  train_domains: [film] ",
            r"rec_tune.train_domains\[0\]: 'film' is not one of movie, book, both",
            "[film]",
        ),
        ("  batch_size: 8 ", "  batch_size: eight ", r"rec_tune.batch_size: expected an integer, got 'eight'", "eight"),
        (
            "  drop_implicit_zeros: false",
            "  drop_implicit_zeros: 1",
            r"data.book.drop_implicit_zeros: expected true or false, got 1",
            "drop_implicit_zeros: 1",
        ),
        (
            "  micro_batch: 2\n  max_epochs",
            "  micro_batch: 3\n  max_epochs",
            r"rec_tune.micro_batch: 3 does not divide rec_tune.batch_size 8",
            "micro_batch: 3",
        ),
        (
            "  name: smollm2-135m ",
            "  name: gpt5 ",
            r"model.name: 'gpt5' is not in the catalog .* needs model.source",
            "gpt5",
        ),
    ],
)
def test_a_bad_value_is_one_line_naming_file_line_and_key(tmp_path, old, new, message, on_line):
    path = changed(tmp_path, old, new)
    with pytest.raises(ParamsError, match=r"params.yaml:\d+: " + message) as e:
        load_params(path)
    assert "\n" not in str(e.value)
    line = int(str(e.value).split(":")[1])
    assert on_line in path.read_text().splitlines()[line - 1]


def test_yaml_syntax_error_and_missing_section_are_one_line(tmp_path):
    broken = TEXT.replace("  ks: [64] ", "  ks: [64 ")
    with pytest.raises(ParamsError, match=r"params.yaml:\d+: YAML syntax error") as e:
        load_params(write(tmp_path, broken))
    assert "\n" not in str(e.value)
    without = TEXT[: TEXT.index("evaluate:")]
    with pytest.raises(ParamsError, match=r"params.yaml: params: missing key 'evaluate'"):
        load_params(write(tmp_path, without))
    with pytest.raises(ParamsError, match="expected a mapping"):
        load_params(write(tmp_path, "- just a list\n"))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.mkdir(), r"params.yaml: is a folder, not a file"),
        (lambda p: p.write_text(""), r"params.yaml: expected a mapping of sections at the top level"),
        (lambda p: p.write_text("just text\n"), r"params.yaml: expected a mapping of sections at the top level"),
        (lambda p: p.write_bytes(b"a: \xff\n"), r"params.yaml:1: not valid utf-8 \(byte 0xff\)"),
    ],
)
def test_a_params_path_that_is_no_readable_mapping_is_one_line(tmp_path, make, message):
    """A folder given as --params was an IsADirectoryError traceback."""
    make(tmp_path / "params.yaml")
    with pytest.raises(DataError, match=message) as e:
        load_params(tmp_path / "params.yaml")
    assert "\n" not in str(e.value)


def test_an_unreadable_params_file_is_one_line(tmp_path, monkeypatch):
    path = write(tmp_path, TEXT)

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)  # chmod 000 does not stop root
    with pytest.raises(DataError, match=r"params.yaml: cannot be read \(Permission denied\)"):
        load_params(path)


def test_a_stage_given_a_folder_as_params_says_so_in_one_line(tmp_path):
    (tmp_path / "params.yaml").mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "tallrec", "sample", "--params", "params.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and lines == ["error: params.yaml: is a folder, not a file"], done.stderr


def test_overrides_set_existing_keys_only():
    params = load_params(ROOT / "params.yaml", ["rec_tune.ks=[16,64,256]", "model.name=qwen2.5-coder-0.5b"])
    assert params.rec_tune.ks == (16, 64, 256) and params.model.name == "qwen2.5-coder-0.5b"
    raw = {"rec_tune": {"ks": [64]}}
    with pytest.raises(ParamsError, match="rec_tune.lrr: unknown key"):
        set_param(raw, "rec_tune.lrr=1")
    with pytest.raises(ParamsError, match="modell: unknown key"):
        set_param(raw, "modell.name=x")
    with pytest.raises(ParamsError, match="expected key.path=value"):
        set_param(raw, "rec_tune.ks")
    with pytest.raises(ParamsError, match=r"rec_tune.lr: -1 must be > 0"):
        load_params(ROOT / "params.yaml", ["rec_tune.lr=-1"])


def test_with_changes_checks_like_a_file():
    p = with_changes(Params(), {"rec_tune": {"ks": [16]}})
    assert p.rec_tune.ks == (16,) and dataclasses.replace(p.rec_tune, ks=(64,)) == Params().rec_tune
    with pytest.raises(ParamsError, match="rec_tune.kss: unknown key"):
        with_changes(Params(), {"rec_tune": {"kss": [16]}})


@pytest.mark.parametrize("command", ["alpaca-tune", "rec-tune", "evaluate", "base-model", "sample"])
def test_a_stage_stops_on_bad_params_before_loading_anything(tmp_path, command):
    path = changed(tmp_path, "  name: smollm2-135m ", "  name: gpt5 ")
    done = subprocess.run(
        [sys.executable, "-m", "tallrec", command, "--params", str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "model.name: 'gpt5' is not in the catalog" in lines[0], done.stderr


@pytest.mark.parametrize(
    "old, new, message, on_line",
    [
        # DVC (ruamel, YAML 1.2) refuses a duplicate key: taking the last one silently trained 500 epochs
        (
            "  max_epochs: 3 ",
            "  max_epochs: 3\n  max_epochs: 500 ",
            r"YAML syntax error: found duplicate key 'max_epochs'",
            "max_epochs: 500",
        ),
        ("  lr: 1.0e-3 ", "  lr: .inf ", r"rec_tune.lr: inf must be a finite number", "lr: .inf"),
        (
            "  weight_decay: 0.0\n  max_grad_norm: 1.0\n  checkpoint_steps: 0           #",
            "  weight_decay: .nan\n  max_grad_norm: 1.0\n  checkpoint_steps: 0           #",
            r"rec_tune.weight_decay: nan must be a finite number",
            "weight_decay: .nan",
        ),
        (
            "  bootstrap: 1000 ",
            "  bootstrap: 1000000000000 ",
            r"report.bootstrap: 1000000000000 must be <= 100000",
            "bootstrap:",
        ),
        ("  r: 8\n", "  r: 100000\n", r"lora.r: 100000 must be <= 1024", "r: 100000"),
        (
            "  threads: 2                    # torch",
            "  threads: 100000               # torch",
            r"model.threads: 100000 must be <= 1024",
            "threads: 100000",
        ),
        (
            "  device: null ",
            "  device: tpu ",
            r"model.device: 'tpu' must be null, cpu, cuda or cuda:<index>",
            "device: tpu",
        ),
        ('  separator: ", "', '  separator: ", {nope}"', None, None),
        (
            "  instruction: Given the user's",
            "  instruction: Given {nope} the user's",
            r"prompt.instruction: .* unknown field \{nope\}: it may use \{noun\}",
            "{nope}",
        ),
        (
            "    book: {noun: book, text: '\"{title}\" written by {author}'}",
            "    book: {noun: book, text: '\"{title}\" by {writer}'}",
            r"prompt.items.book.text: unknown field \{writer\}: it may use \{author\}, \{title\}",
            "{writer}",
        ),
    ],
)
def test_params_mean_what_dvc_reads_and_values_that_can_only_be_mistakes_are_refused(
    tmp_path, old, new, message, on_line
):
    path = changed(tmp_path, old, new)
    if message is None:  # the separator is joined, never formatted: braces are plain text there
        assert load_params(path).prompt.separator == ", {nope}"
        return
    with pytest.raises(ParamsError, match=r"params.yaml:\d+: " + message) as e:
        load_params(path)
    assert "\n" not in str(e.value)
    line = int(str(e.value).split(":")[1])
    assert on_line in path.read_text().splitlines()[line - 1]


def test_numbers_are_read_as_yaml_1_2_reads_them(tmp_path):
    """`lr: 1e-4` is a float to DVC (YAML 1.2's core schema), which `dvc params diff` shows as 0.0001;
    PyYAML's YAML 1.1 wants a dot and read a text. 010 is ten in YAML 1.2, not eight."""
    from dvc.utils.serialize import parse_yaml as dvc_parse_yaml

    text = TEXT.replace("  lr: 1.0e-3 ", "  lr: 1e-4 ").replace("  epochs: 20 ", "  epochs: 010 ")
    path = write(tmp_path, text)
    ours = load_params(path)
    theirs = dvc_parse_yaml(text, str(path))
    assert ours.rec_tune.lr == theirs["rec_tune"]["lr"] == 1e-4
    assert ours.baselines.epochs == theirs["baselines"]["epochs"] == 10
    assert load_params(ROOT / "params.yaml", ["rec_tune.lr=5e-4"]).rec_tune.lr == 5e-4
