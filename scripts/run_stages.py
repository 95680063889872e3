"""Run the LLM stages in order without DVC, with params.yaml plus overrides, and time each one.

For a machine that has the project and its data but no DVC, such as a bare GPU box:

    python scripts/run_stages.py --gguf /tmp/qwen.gguf -S model.name=qwen2.5-coder-0.5b \\
        -S 'rec_tune.ks=[16,64,256]' -S evaluate.batch_size=64 [--stages base-model alpaca-tune rec-tune evaluate]

`-S key.path=value` works like `dvc exp run -S` (the value is read as YAML). Each stage is the
`tallrec <stage>` command that dvc.yaml runs, called on the merged params, so it writes the same
files (models/, metrics/llm*.json, curves). At
the end a table gives each stage's wall time, peak RSS and peak GPU memory; `--report FILE` also
writes it, with the merged params, as JSON.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch
import yaml
from rich.console import Console
from rich.table import Table

from tallrec import cli
from tallrec.config import params_from_dict, parse_yaml, read_params_text, set_param
from tallrec.io import write_json
from tallrec.runtime import configure_threads

STAGES = ("base-model", "alpaca-tune", "rec-tune", "evaluate")


def run_stage(stage: str, params_file: Path, gguf: Path | None) -> None:
    """The `tallrec <stage>` command that dvc.yaml runs, on the merged params file."""
    if stage == "base-model":
        cli.base_model(params_file=params_file, gguf=gguf)
    else:
        {"alpaca-tune": cli.alpaca_tune, "rec-tune": cli.rec_tune, "evaluate": cli.evaluate_cmd}[stage](
            params_file=params_file
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-S", "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    ap.add_argument("--gguf", type=Path, default=None, help="the backbone's joined GGUF, for base-model")
    ap.add_argument("--report", type=Path, default=None, help="also write the timings as JSON here")
    args = ap.parse_args()

    params, _ = parse_yaml(read_params_text(args.params), args.params)
    for assignment in args.overrides:
        set_param(params, assignment, args.params)
    typed = params_from_dict(params, args.params)  # a bad key or value stops here, before any stage runs
    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name() if cuda else f"CPU, {configure_threads(typed.model.threads)} threads"
    rows = []
    with tempfile.TemporaryDirectory(prefix="tallrec-params-") as tmp:
        params_file = Path(tmp) / "params.yaml"
        params_file.write_text(yaml.safe_dump(params, sort_keys=False))
        for stage in args.stages:
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            run_stage(stage, params_file, args.gguf)
            seconds = time.perf_counter() - start
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the process's peak so far
            gpu = torch.cuda.max_memory_allocated() / 2**20 if cuda else 0.0
            rows.append(
                {"stage": stage, "seconds": round(seconds, 1), "peak_rss_mib": round(rss), "peak_gpu_mib": round(gpu)}
            )

    table = Table(title=f"LLM stages on {device}, model {typed.model.name}")
    for column in ("stage", "seconds", "peak RSS MiB (so far)", "peak GPU MiB"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for r in rows:
        table.add_row(r["stage"], f"{r['seconds']:.0f}", f"{r['peak_rss_mib']}", f"{r['peak_gpu_mib']}")
    Console().print(table)
    if args.report:
        write_json({"device": device, "params": params, "stages": rows}, args.report)


if __name__ == "__main__":
    main()
