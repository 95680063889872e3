"""`make pull` (scripts/pull.py) on a tiny DVC project with a local store: never-pushed stages rebuilt,
the rest pulled and hashed against dvc.lock; a tampered or missing object is one line per output and
never lands in the workspace. Every remote the project configures verifies what it downloads."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PULL = ROOT / "scripts" / "pull.py"

DVC_YAML = """\
stages:
  data:                       # licensed rows: never pushed, rebuilt by `make pull`
    cmd: python -c "open('rows.txt', 'w').write('licensed rows\\n')"
    outs:
      - rows.txt:
          push: false
  train:
    cmd: python -c "import hashlib, os; d = hashlib.sha256(open('rows.txt', 'rb').read()).digest();
      os.makedirs('adapter', exist_ok=True); open('adapter/adapter_model.safetensors', 'wb').write(d * 4096);
      open('adapter/adapter_config.json', 'w').write('{}')"
    deps:
      - rows.txt
    outs:
      - adapter
"""


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, f"{cmd}: {done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(params=["verify", "no-verify"])
def published(request, tmp_path) -> tuple[Path, Path]:
    """(project pushed to a scratch store, the store). The project's remotes verify downloads; pull.py
    re-hashes what it pulled all the same, so a remote set up without `verify` cannot install bad bytes."""
    project, store = tmp_path / "project", tmp_path / "store"
    project.mkdir()
    run(["git", "init", "-q"], project)
    run(["git", "config", "user.email", "t@example.com"], project)
    run(["git", "config", "user.name", "t"], project)
    run(["dvc", "init", "-q"], project)
    (project / "dvc.yaml").write_text(DVC_YAML)
    run(["dvc", "remote", "add", "-d", "scratch", str(store)], project)
    run(["dvc", "remote", "modify", "scratch", "verify", "true" if request.param == "verify" else "false"], project)
    run(["dvc", "repro", "-q"], project)
    run(["dvc", "push", "-q"], project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "pipeline"], project)
    return project, store


def clone(project: Path, to: Path) -> Path:
    run(["git", "clone", "-q", str(project), str(to)], project.parent)
    return to


def adapter_object(project: Path, store: Path) -> Path:
    import yaml

    lock = yaml.safe_load((project / "dvc.lock").read_text())
    manifest = lock["stages"]["train"]["outs"][0]["md5"]
    import json

    files = json.loads((store / "files" / "md5" / manifest[:2] / manifest[2:]).read_text())
    md5 = next(e["md5"] for e in files if e["relpath"] == "adapter_model.safetensors")
    return store / "files" / "md5" / md5[:2] / md5[2:]


def test_pull_rebuilds_the_never_pushed_and_pulls_the_rest(published, tmp_path):
    project, _ = published
    fresh = clone(project, tmp_path / "fresh")
    done = run([sys.executable, str(PULL)], fresh)
    assert "pulled and checked 1 outputs, rebuilt 1 stages" in done.stdout
    assert (fresh / "adapter" / "adapter_model.safetensors").read_bytes() == (
        project / "adapter" / "adapter_model.safetensors"
    ).read_bytes()
    assert "up to date" in run(["dvc", "status"], fresh).stdout


def test_a_tampered_object_is_refused_in_one_line_and_never_installed(published, tmp_path):
    """16 bytes changed inside the adapter's object in the store: a plain `dvc pull` installed them under
    the good name (and `dvc status` said up to date); the project's remotes verify, and pull.py re-hashes."""
    project, store = published
    obj = adapter_object(project, store)
    data = bytearray(obj.read_bytes())
    data[1000:1016] = b"\xff" * 16
    obj.chmod(0o644)
    obj.write_bytes(bytes(data))
    fresh = clone(project, tmp_path / "fresh")
    done = run([sys.executable, str(PULL)], fresh, check=False)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 1 and len(errors) == 1 and errors[0].startswith("error: adapter:"), done.stderr
    bad = fresh / "adapter" / "adapter_model.safetensors"
    assert not bad.exists() or bad.read_bytes() != bytes(data)
    cached = list((fresh / ".dvc" / "cache").rglob(obj.name))
    assert all(c.read_bytes() != bytes(data) for c in cached)


def test_a_missing_object_is_one_line_naming_the_output(published, tmp_path):
    project, store = published
    adapter_object(project, store).unlink()
    fresh = clone(project, tmp_path / "fresh")
    done = run([sys.executable, str(PULL)], fresh, check=False)
    errors = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("rebuilding")]
    assert done.returncode == 1 and errors == [errors[0]] and "adapter: not in the store" in errors[0], done.stderr
    assert "ERROR" not in done.stderr


def test_every_remote_the_project_configures_verifies_downloads():
    config = configparser.ConfigParser()
    config.read(ROOT / ".dvc" / "config")
    remotes = [s for s in config.sections() if s.strip("'").startswith("remote ")]
    assert remotes, "the project configures its published store"
    for section in remotes:
        assert config[section].get("verify") == "true", f"{section} does not verify what it downloads"
    assert "remote modify" in (ROOT / "README.md").read_text() and "verify true" in (ROOT / "README.md").read_text()


def test_the_makefile_targets_exist():
    text = (ROOT / "Makefile").read_text()
    for target in ("repro:", "test:", "verify:", "verify-fast:", "pull:", "bench:"):
        assert target in text
    assert shutil.which("git")
