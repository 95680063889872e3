"""Speed cuts for the evaluate stages that would keep every output byte (issue 22, item 6), measured.

    .venv/bin/python benchmarks/bench_cuts.py [--adapter DIR] [--domains movie,book] [--n 128] [--quick]
    .venv/bin/python benchmarks/bench_cuts.py --cuts stages,dealt --repeat 3 --name cuts-repeated

Scores the same real test prompts under the canonical numerics (tallrec.numerics: AVX2 kernels, fp32)
as the evaluate stages do (tallrec.scoring.Scorer: one process on `model.threads` threads,
`evaluate.batch_size`, the cached instruction prefix, the LoRA unmerged), then once per candidate cut,
each in fresh processes, one candidate after the other; the time is the scoring alone, after a
warm-up. A cut the pipeline may take without a new lock must give p_yes with the stages' bytes ("same
bytes": yes); any other changes the stages' outputs, however small "max |Δp|" is. Candidates:
- 1 thread: how much of the second core one process uses;
- 2 processes × 1 thread: the stages' own batches (length-sorted, `evaluate.batch_size` rows) dealt out
  alternately to two processes that start together (a batch's bytes follow its rows and widths, not the
  thread count, so this one keeps the bytes by construction: the column checks it);
- batch 4 / batch 16: fewer or more rows per forward pass;
- LoRA merged: the adapter folded into the fp32 weights (peft `merge_and_unload`);
- no prefix cache: every prompt run whole (what the cache saves).
With `--repeat R` the chosen cuts run R times each, in turn (all cuts, then all again), and the table
shows the median time and the range: one run of a 40-second candidate varies by several percent here.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from tallrec import numerics  # noqa: E402

numerics.pin()  # before torch: the stages' numerics, inherited by every spawned process

import argparse  # noqa: E402
import multiprocessing  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import record  # noqa: E402  (benchmarks/ is on sys.path when this file runs as a script)


@dataclass(frozen=True)
class Cut:
    key: str  # --cuts
    name: str
    threads: int
    processes: int = 1
    batch_size: int | None = None  # None: evaluate.batch_size
    merged: bool = False
    prefix_cache: bool = True


def cuts(threads: int, adapter: str | None) -> list[Cut]:
    out = [
        Cut("stages", f"the stages: 1 process × {threads} threads", threads),
        Cut("1-thread", "1 thread", 1),
        Cut("dealt", f"{threads} processes × 1 thread, batches dealt", 1, processes=threads),
        Cut("batch4", "batch 4", threads, batch_size=4),
        Cut("batch16", "batch 16", threads, batch_size=16),
        Cut("no-prefix", "no prefix cache", threads, prefix_cache=False),
    ]
    if adapter:
        out.insert(5, Cut("merged", "LoRA merged into fp32 weights", threads, merged=True))
    return out


KEYS = tuple(c.key for c in cuts(threads=2, adapter="any"))  # every cut's key, for --help and its errors


def _worker(cut: Cut, index: int, base: str, adapter: str | None, prompts: list[str], barrier, queue) -> None:
    """One process of a cut: load as the stages do, warm up, wait for its siblings, score its prompts."""
    from tallrec.config import load_params
    from tallrec.model import load_scoring_model
    from tallrec.runtime import configure_threads, quiet_libraries
    from tallrec.scoring import Scorer, ScoringConfig

    quiet_libraries()
    params = load_params()
    configure_threads(cut.threads)
    model, tokenizer = load_scoring_model(base, adapter, params.model)
    if cut.merged:  # not a pipeline option: the stages never merge
        model = model.merge_and_unload()
    batch = cut.batch_size or params.evaluate.batch_size
    config = ScoringConfig(batch_size=batch, prompt=params.prompt, prefix_cache=cut.prefix_cache, progress=False)
    scorer = Scorer(model, tokenizer, config)
    scorer.score(prompts[:batch])
    barrier.wait()
    start = time.perf_counter()
    p = scorer.score(prompts)
    queue.put((index, p, time.perf_counter() - start))


def deal(prompts: list[str], tokenizer, batch_size: int, processes: int) -> list[list[int]]:
    """Indices of `prompts` per process: the stages' batches, in their order (longest first, a stable
    sort), dealt out one batch each in turn. Each share is itself in that order and every dealt batch but
    the very last is full, so a Scorer cuts each share back into exactly the stages' batches."""
    from tallrec.scoring import common_prefix_len

    ids = tokenizer(list(prompts))["input_ids"]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    shares = [[i for b in batches[w::processes] for i in b] for w in range(processes)]
    whole = common_prefix_len(ids)
    for share in shares:  # the instruction prefix each process caches must be the stages'
        if common_prefix_len([ids[i] for i in share]) != whole:
            raise SystemExit("error: a share of the prompts has a longer common prefix than all of them; use more --n")
    return shares


def run_cut(cut: Cut, base: str, adapter: str | None, prompts: list[str], tokenizer, batch_size: int):
    """(p_yes in input order, seconds from the common start to the last process's end)."""
    ctx = multiprocessing.get_context("spawn")
    shares = deal(prompts, tokenizer, batch_size, cut.processes) if cut.processes > 1 else [list(range(len(prompts)))]
    barrier, queue = ctx.Barrier(len(shares)), ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(cut, w, base, adapter, [prompts[i] for i in share], barrier, queue))
        for w, share in enumerate(shares)
    ]
    for proc in procs:
        proc.start()
    results = [queue.get() for _ in procs]
    for proc in procs:
        proc.join()
        if proc.exitcode:
            raise SystemExit(f"error: {cut.name}: a process exited with status {proc.exitcode}")
    out = np.empty(len(prompts), dtype=np.float64)
    for w, p, _ in results:
        out[shares[w]] = p
    return out, max(sec for _, _, sec in results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="models/base/smollm2-135m")
    ap.add_argument("--adapter", default="models/rec/smollm2-135m/tallrec_movie_k64_seed0", help="'' for none")
    ap.add_argument("--domains", default="movie,book", help="test domains, each its own rows")
    ap.add_argument("--n", type=int, default=128, help="test prompts per domain (its first n rows)")
    ap.add_argument("--cuts", default=None, help="comma-separated keys (default: all): " + ", ".join(KEYS))
    ap.add_argument("--repeat", type=int, default=1, help="runs of each cut, in turn; the median is shown")
    ap.add_argument("--name", default="cuts", help="results file: benchmarks/results/<name>.md")
    ap.add_argument("--quick", action="store_true", help="48 movie prompts, the stages' path and the dealt one")
    args = ap.parse_args()
    from tallrec.config import load_params
    from tallrec.evaluation import test_frame
    from tallrec.model import context_length, load_tokenizer, module_skeleton
    from tallrec.prompts import prompt_budget, rec_prompts

    if args.quick:
        args.n, args.domains, args.cuts = 48, "movie", "stages,dealt"
    params = load_params()
    adapter = args.adapter or None
    tokenizer = load_tokenizer(args.base)
    context = context_length(module_skeleton(args.base))
    budget = prompt_budget(tokenizer, params.prompt, params.model.max_length, context)
    todo = cuts(params.model.threads, adapter)
    if args.cuts:
        wanted = args.cuts.split(",")
        if unknown := sorted(set(wanted) - {c.key for c in todo}):
            raise SystemExit(f"error: --cuts {','.join(unknown)}: not a cut here (keys: {', '.join(KEYS)})")
        todo = [c for c in todo if c.key in wanted]
    if todo[0].key != "stages":
        raise SystemExit("error: --cuts must include stages: every row is compared with it")
    console = Console(stderr=True)
    runs = f", median of {args.repeat} runs each" if args.repeat > 1 else ""
    table = Table(
        title=f"evaluate-stage scoring cuts, {args.n} test prompts a domain{runs}, {adapter or 'untuned backbone'}"
    )
    columns = ["domain", "cut", "batch", "s", *(["range s"] if args.repeat > 1 else []), "prompts/s", "× the stages"]
    for col in (*columns, "same bytes", "max |Δp|"):
        table.add_column(col, justify="left" if col in ("domain", "cut") else "right")
    for domain in args.domains.split(","):
        prompts, _ = rec_prompts(test_frame(domain, None).head(args.n), params.prompt, tokenizer, budget)
        seconds: dict[str, list[float]] = {c.key: [] for c in todo}
        scores = {}
        for _ in range(args.repeat):
            for cut in todo:
                scores[cut.key], sec = run_cut(cut, args.base, adapter, prompts, tokenizer, params.evaluate.batch_size)
                seconds[cut.key].append(sec)
                console.print(f"  {domain}, {cut.name}: {sec:.1f} s")
        base_s, base_p = float(np.median(seconds["stages"])), scores["stages"]
        for cut in todo:
            sec, p = float(np.median(seconds[cut.key])), scores[cut.key]
            spread = [f"{min(seconds[cut.key]):.1f}–{max(seconds[cut.key]):.1f}"] if args.repeat > 1 else []
            table.add_row(
                domain,
                cut.name,
                str(cut.batch_size or params.evaluate.batch_size),
                f"{sec:.1f}",
                *spread,
                f"{len(prompts) / sec:.2f}",
                f"{base_s / sec:.2f}",
                "yes" if np.array_equal(p, base_p) else "no",
                f"{np.abs(p - base_p).max():.1e}",
            )
    record.save(args.name, [table], args.quick)


if __name__ == "__main__":
    main()
