"""Time and peak memory of the baseline grid (text embeddings + every model x domain x K x seed).

Target: the whole grid, weight-decay search included, in at most 20 minutes on a 2-core CPU.
Runs in a scratch folder (the project's data/processed linked in), so the pipeline's own outputs are never
touched; writes its table to benchmarks/results/baselines.md (`--quick`: two models, K=16, seed 0, into
benchmarks/results/quick/baselines.md).

Usage (from the project root):
    python benchmarks/bench_baselines.py                      # the grid in params.yaml
    python benchmarks/bench_baselines.py --quick              # gru4rec and sasrec, K=16, seed 0
    python benchmarks/bench_baselines.py --paper-grid         # 6 models x 2 domains x 3 K x 5 seeds
    python benchmarks/bench_baselines.py --models gru4rec caser --skip-embed
    python benchmarks/bench_baselines.py --paper-grid --set history_labels=false   # ids only, as the paper's
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

import record  # benchmarks/ is on sys.path when this file runs as a script
from tallrec import paths
from tallrec.config import load_params


def peak_rss_mib() -> float:
    """The largest of this process and its finished children (the grid's worker processes)."""
    own, children = (resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return max(own, children) / 1024


PAPER_GRID = {
    "models": ["gru4rec", "caser", "sasrec", "dros"],
    "text_models": ["gru_bert", "dros_bert"],
    "domains": ["movie", "book"],
    "ks": [16, 64, 256],
    "seeds": [0, 1, 2, 3, 4],
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="*", help="default: baselines.models in params.yaml")
    parser.add_argument("--skip-embed", action="store_true", help="reuse models/text_embeddings/")
    parser.add_argument("--threads", type=int, help="override baselines.threads (1 on a busy machine)")
    parser.add_argument("--paper-grid", action="store_true", help="the paper's Table 3 grid, whatever params.yaml says")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override baselines.KEY (YAML value)")
    parser.add_argument("--quick", action="store_true", help="gru4rec and sasrec at K=16, seed 0")
    args = parser.parse_args()
    overrides = [f"baselines.{assignment}" for assignment in args.set]
    if args.quick:
        args.models = args.models or ["gru4rec", "sasrec"]
        overrides += ["baselines.ks=[16]", "baselines.seeds=[0]"]
    if args.paper_grid:
        overrides += [f"baselines.{key}={json.dumps(value)}" for key, value in PAPER_GRID.items()]
    if args.threads:
        overrides.append(f"baselines.threads={args.threads}")
    if args.models:  # text_embed embeds only for the text-aware ones
        from tallrec.names import TEXT_BASELINES

        overrides.append(f"baselines.models={json.dumps([m for m in args.models if m not in TEXT_BASELINES])}")
        overrides.append(f"baselines.text_models={json.dumps([m for m in args.models if m in TEXT_BASELINES])}")
    params = load_params(record.ROOT / paths.PARAMS, overrides=overrides)
    with tempfile.TemporaryDirectory() as work:
        os.chdir(work)  # the stages' relative paths now land here
        (Path(work) / paths.DATA).mkdir()
        (Path(work) / paths.PROCESSED).symlink_to(record.ROOT / paths.PROCESSED)
        embeddings = record.ROOT / paths.MODELS / "text_embeddings"
        if args.skip_embed and embeddings.exists():
            (Path(work) / paths.MODELS).mkdir()
            (Path(work) / paths.MODELS / "text_embeddings").symlink_to(embeddings)
        table = run_grid(params, args.skip_embed)
    os.chdir(record.ROOT)
    record.save("baselines", [table], args.quick)


def run_grid(params, skip_embed: bool) -> Table:
    section, models = params.baselines, params.baselines.models + params.baselines.text_models
    from tallrec.baselines.run import run_model
    from tallrec.baselines.text_embed import text_embed

    rows = []
    if not skip_embed and section.text_models:
        for domain in section.domains:
            start = time.perf_counter()
            text_embed(domain, params)
            rows.append((f"text_embed {domain}", time.perf_counter() - start, peak_rss_mib(), ""))
    for model in models:
        start = time.perf_counter()
        summary = run_model(model, params)
        cells = "  ".join(f"{d[:1]}{k[1:]} {v['auc_mean']:.3f}" for d, by_k in summary.items() for k, v in by_k.items())
        rows.append((model, time.perf_counter() - start, peak_rss_mib(), cells))
        Console(stderr=True).print(f"{model}: {rows[-1][1]:.0f} s  {cells}")
    n_runs = len(section.domains) * len(section.ks) * len(section.seeds)
    table = Table(
        title=f"baseline grid: {n_runs} runs x {len(section.weight_decays)} weight decays per model "
        f"({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})"
    )
    for column in ("step", "seconds", "peak RSS so far (MiB)", "test AUC mean (m=movie, b=book; K)"):
        table.add_column(column, justify="left" if column.startswith(("step", "test")) else "right")
    for name, seconds, rss, cells in rows:
        table.add_row(name, f"{seconds:.0f}", f"{rss:.0f}", cells)
    total = sum(r[1] for r in rows)
    table.add_row("total", f"{total:.0f}", f"{peak_rss_mib():.0f}", "target: 1200 s", style="bold")
    return table


if __name__ == "__main__":
    main()
