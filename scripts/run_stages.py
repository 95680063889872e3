"""Run the LLM stages in order without DVC, with params.yaml plus overrides, and time each one.

For a machine that has the project and its data but no DVC, such as a bare GPU box:

    python scripts/run_stages.py --gguf /tmp/qwen.gguf -S model.name=qwen2.5-coder-0.5b \\
        -S 'rec_tune.ks=[16,64,256]' -S evaluate.batch_size=64 [--stages base-model alpaca-tune rec-tune evaluate]

`-S key.path=value` works like `dvc exp run -S` (the value is read as YAML). The stages are the
same functions `dvc repro` runs, writing the same files (models/, metrics/llm*.json, curves). At
the end a table gives each stage's wall time, peak RSS and peak GPU memory; `--report FILE` also
writes it, with the merged params, as JSON.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from rich.console import Console
from rich.table import Table

from tallrec.config import load_params
from tallrec.io import write_json

STAGES = ("base-model", "alpaca-tune", "rec-tune", "evaluate")


def apply_override(params: dict[str, Any], assignment: str) -> None:
    key, sep, value = assignment.partition("=")
    if not sep:
        raise SystemExit(f"-S {assignment!r}: expected key.path=value")
    *parents, leaf = key.split(".")
    node = params
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = yaml.safe_load(value)


def run_stage(stage: str, params: dict[str, Any], gguf: Path | None) -> str:
    from tallrec.model import ModelConfig, build_base

    if stage == "base-model":
        cfg = ModelConfig.from_params(params)
        return str(build_base(cfg.name, cfg.source, gguf=gguf))
    if stage == "alpaca-tune":
        from tallrec.tuning import alpaca_tune

        state = alpaca_tune(params)
        return f"{state.global_step} steps, last loss {state.history[-1]['loss']:.4f}"
    if stage == "rec-tune":
        from tallrec.tuning import rec_tune

        runs = rec_tune(params)
        return ", ".join(f"{r.name} valid {s.best_auc:.3f}@{s.best_epoch}/{s.epoch}" for r, s in runs)
    if stage == "evaluate":
        from tallrec.evaluation import evaluate

        combined = evaluate(params)
        return f"{len(combined)} configurations"
    raise SystemExit(f"unknown stage {stage!r} (one of {', '.join(STAGES)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-S", "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    ap.add_argument("--gguf", type=Path, default=None, help="the backbone's joined GGUF, for base-model")
    ap.add_argument("--report", type=Path, default=None, help="also write the timings as JSON here")
    args = ap.parse_args()

    from tallrec.scoring import configure_threads

    params = load_params(args.params)
    for assignment in args.overrides:
        apply_override(params, assignment)
    threads = configure_threads()
    console = Console(stderr=True)
    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name() if cuda else f"CPU, {threads} threads"
    rows = []
    for stage in args.stages:
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        summary = run_stage(stage, params, args.gguf)
        seconds = time.perf_counter() - start
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the process's peak so far
        gpu = torch.cuda.max_memory_allocated() / 2**20 if cuda else 0.0
        rows.append({"stage": stage, "seconds": round(seconds, 1), "peak_rss_mib": round(rss), "peak_gpu_mib": round(gpu), "summary": summary})
        console.print(f"[bold]{stage}[/] {seconds:.0f} s: {summary}", soft_wrap=True)

    table = Table(title=f"LLM stages on {device}, model {params['model']['name']}")
    for column in ("stage", "seconds", "peak RSS MiB (so far)", "peak GPU MiB"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for r in rows:
        table.add_row(r["stage"], f"{r['seconds']:.0f}", f"{r['peak_rss_mib']}", f"{r['peak_gpu_mib']}")
    Console().print(table)
    if args.report:
        write_json({"device": device, "params": params, "stages": rows}, args.report)


if __name__ == "__main__":
    main()
