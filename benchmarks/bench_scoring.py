"""Scoring speed: TALLRec's reference path vs a naive forward vs our engine, on one backbone.

    .venv/bin/python benchmarks/bench_scoring.py [--n 256] [--base models/base/smollm2-135m]

All paths score the same real movie test prompts with the same model, dtype and thread count:
- reference: greedy `generate(max_new_tokens=128)` per batch, p_yes read from `scores[0]`, as the
  original TALLRec evaluate.py does;
- naive: one prompt at a time, a plain forward computing logits at every position;
- engine (no prefix cache): `tallrec.scoring` with sorted batches only;
- engine: `tallrec.scoring` as used by the evaluate stage (sorted batches + cached instruction prefix).
GFLOP/s = 2 x N x prompt tokens / s, N = non-embedding parameters (the embedding is a lookup); the
machine's matmul rate is measured in the same run, at the same thread count. A table, not a test.

    .venv/bin/python benchmarks/bench_scoring.py --precision [--adapter DIR] [--domain movie] [--n 0]

compares the engine in fp32 with reduced-precision candidates (benchmarks/precision_paths.py) on real
test prompts (`--n 0`: the whole test set, as the quality guard asks): prompts/s and its ratio to fp32
(each path in its own process, one after the other, so the ratio comes from one run), AUC, Pearson r and
max |Δ| of p_yes against fp32, peak RSS, and the guard verdict.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import polars as pl
import torch
from rich.console import Console
from rich.table import Table

from tallrec.prompts import alpaca_prompt
from tallrec.config import PromptParams
from tallrec.prompts import answer_token_ids
from tallrec.runtime import configure_threads, pick_device, pick_dtype
from tallrec.scoring import Scorer, ScoringConfig

import record  # benchmarks/ is on sys.path when this file runs as a script
from precision_paths import PATHS, build


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(dtype: torch.dtype, device: torch.device, seconds: float = 2.0) -> tuple[int, float]:
    """(n, GFLOP/s) of n x n x n products: 2048 on a CPU, 8192 (enough to fill it) on a GPU."""
    n = 8192 if device.type == "cuda" else 2048
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    a @ b  # warm-up: kernel selection, AMX tile setup
    sync(device)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
        if reps % 10 == 0:
            sync(device)
    sync(device)
    return n, 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def reference(model, tok, prompts, yes, no, batch_size, force_128=False):
    """The original evaluate.py: generate up to 128 tokens to read the first step's scores.
    Generation stops when every row has emitted EOS; force_128 runs all 128 steps (a model that
    never stops, the case the issue describes)."""
    tok.padding_side = "left"
    out, steps = [], []
    for i in range(0, len(prompts), batch_size):
        enc = tok(prompts[i : i + batch_size], return_tensors="pt", padding=True).to(model.device)
        with torch.inference_mode():
            gen = model.generate(
                **enc,
                max_new_tokens=128,
                do_sample=False,
                num_beams=1,
                return_dict_in_generate=True,
                output_scores=True,
                pad_token_id=tok.pad_token_id,
                min_new_tokens=128 if force_128 else 0,
            )
        steps.append(len(gen.scores))
        out.append(torch.softmax(gen.scores[0][:, [yes, no]].float(), -1)[:, 0])
    print(f"  reference: {np.mean(steps):.0f} generated tokens per batch on average")
    return torch.cat(out).cpu().numpy()


def naive(model, tok, prompts, yes, no):
    out = []
    with torch.inference_mode():
        for p in prompts:
            logits = model(
                **tok(p, return_tensors="pt").to(model.device)
            ).logits  # every position, the whole vocabulary
            out.append(torch.softmax(logits[0, -1, [yes, no]].float(), -1)[0].item())
    return np.array(out)


def _score_path(path, base, adapter, prompts, calibration, batch_size, threads, queue) -> None:
    """One candidate in a fresh process (its own peak RSS): load, warm up, score every prompt."""
    import resource

    from tallrec.runtime import configure_threads, quiet_libraries

    quiet_libraries()
    configure_threads(threads)
    model, tok = build(path, base, adapter, calibration, batch_size)
    scorer = Scorer(model, tok, ScoringConfig(batch_size=batch_size, progress=False))
    scorer.score(prompts[:4])
    t = time.perf_counter()
    p = scorer.score(prompts)
    queue.put((p, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def precision_main(args) -> None:
    import multiprocessing

    from tallrec.config import load_params
    from tallrec.evaluation import test_frame
    from tallrec.metrics import auc
    from tallrec.model import load_tokenizer
    from tallrec.prompts import prompt_budget, rec_prompts
    from tallrec.numerics import reported_flags
    from tallrec.runtime import native_bf16, usable_cores

    params = load_params()
    tok = load_tokenizer(args.base)
    df = test_frame(args.domain, args.n or None)
    from transformers import AutoConfig

    budget = prompt_budget(
        tok, params.prompt, params.model.max_length, AutoConfig.from_pretrained(args.base).max_position_embeddings
    )
    prompts, _ = rec_prompts(df, params.prompt, tok, budget)
    vdf = pl.read_parquet(f"data/processed/{args.domain}/valid.parquet").head(args.calibration)
    calibration = rec_prompts(vdf, params.prompt, tok, budget)[0]
    labels = df["label"].cast(pl.Int64).to_numpy()
    threads = args.threads or usable_cores()
    flags = list(reported_flags())
    console = Console(width=160)
    console.print(
        f"{args.base} + {args.adapter or 'no adapter'}, {args.domain} test, {len(prompts)} prompts, {threads} threads, "
        f"CPU flags: {' '.join(flags)}"
    )
    ctx = multiprocessing.get_context("spawn")
    results = {}
    paths = args.paths.split(",")
    if "fp32" not in paths:  # every row is compared with it
        raise SystemExit(
            f"error: --paths {args.paths}: fp32 must be among them (the reference the others are compared with)"
        )
    for path in paths:
        if path == "fp32-merged" and args.adapter is None:
            console.print("  fp32-merged: skipped, no --adapter (with none it is plain fp32)")
            continue
        if path == "bf16" and not native_bf16():
            console.print(
                "  bf16: skipped, no native bf16 on this CPU (emulated bf16 matmul measured >100x slower than fp32)"
            )
            continue
        queue = ctx.Queue()
        proc = ctx.Process(
            target=_score_path,
            args=(path, args.base, args.adapter, prompts, calibration, args.batch_size, threads, queue),
        )
        proc.start()
        results[path] = queue.get()
        proc.join()
        console.print(f"  {path}: {results[path][1]:.1f} s")
    p32, s32, _ = results["fp32"]
    a32 = auc(labels, p32)
    table = Table(
        title=f"reduced-precision scoring, {len(prompts)} {args.domain} test prompts, "
        f"{args.adapter or 'untuned backbone'}, {threads} threads, flags {' '.join(flags)}"
    )
    columns = ("path", "s", "prompts/s", "× fp32", "AUC", "|ΔAUC|", "r(p_yes)", "max |Δp|", "same bytes")
    for col in (*columns, "peak RSS MiB", "guard"):
        table.add_column(col, justify="left" if col == "path" else "right")
    for path, (p, sec, rss) in results.items():
        a, r = auc(labels, p), float(np.corrcoef(p, p32)[0, 1])
        ok = abs(a - a32) <= 0.003 and r >= 0.99
        table.add_row(
            path,
            f"{sec:.1f}",
            f"{len(prompts) / sec:.2f}",
            f"{s32 / sec:.2f}",
            f"{a:.4f}",
            f"{abs(a - a32):.4f}",
            f"{r:.4f}",
            f"{np.abs(p - p32).max():.1e}",
            "yes" if np.array_equal(p, p32) else "no",  # a cut the pipeline may take without a new lock
            f"{rss:.0f}",
            "pass" if ok else "FAIL",
        )
    record.save("precision", [table], args.quick)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="models/base/smollm2-135m")
    ap.add_argument("--n", type=int, default=256, help="movie test prompts")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "bf16", "fp32"],
        help="auto: what the pipeline picks (tallrec.runtime.pick_dtype)",
    )
    ap.add_argument("--forced-n", type=int, default=32, help="prompts for the forced-128-token reference (0: skip)")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="default: every core this process may use (tallrec.runtime.configure_threads)",
    )
    ap.add_argument("--device", default=None, help="default: cuda when present, else cpu")
    ap.add_argument(
        "--precision", action="store_true", help="compare fp32 with the reduced-precision candidates instead"
    )
    ap.add_argument("--paths", default=",".join(PATHS), help="--precision: candidates (fp32 first)")
    ap.add_argument(
        "--adapter", default=None, help="--precision: a rec-tuned adapter folder (default: the untuned backbone)"
    )
    ap.add_argument("--domain", default="movie", help="--precision: test domain")
    ap.add_argument(
        "--calibration", type=int, default=32, help="--precision: valid prompts that calibrate the smoothing"
    )
    ap.add_argument("--quick", action="store_true", help="a few prompts (speed: 32, precision: 64 and fp32,bf16)")
    args = ap.parse_args()
    if args.quick:
        args.n, args.forced_n = (64, 0) if args.precision else (32, 4)
        if args.precision and args.paths == ",".join(PATHS):
            args.paths = "fp32,bf16"
    if args.precision:
        return precision_main(args)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    console = Console(width=150)
    threads = configure_threads(args.threads)
    device = pick_device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{threads} threads"
    dtype = pick_dtype(args.dtype, device)
    args.dtype = "bf16" if dtype == torch.bfloat16 else "fp32"
    tok = AutoTokenizer.from_pretrained(args.base)
    model = AutoModelForCausalLM.from_pretrained(args.base, dtype=dtype).to(device).eval()
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    df = pl.read_parquet("data/processed/movie/test.parquet").head(args.n)
    prompts = [alpaca_prompt(i, x) for i, x in zip(df["instruction"], df["input"])]
    tokens = sum(len(ids) for ids in tok(prompts)["input_ids"])
    n_params = model.num_parameters() - model.get_input_embeddings().weight.numel()
    yes, no = answer_token_ids(tok, PromptParams().yes, PromptParams().no)
    console.print(
        f"{args.base} ({n_params / 1e6:.1f}M non-embedding params), {args.dtype}, {where}, "
        f"{len(prompts)} prompts, {tokens} tokens (mean {tokens / len(prompts):.0f})"
    )

    peak = {name: matmul_gflops(dt, device) for name, dt in (("bf16", torch.bfloat16), ("fp32", torch.float32))}
    rows, scores = [], {}

    def timed(name, fn, n=len(prompts)):
        sync(device)
        t = time.perf_counter()
        scores[name] = fn()
        sync(device)
        rows.append((name, time.perf_counter() - t, n))
        console.print(f"  {name}: {rows[-1][1]:.1f} s")

    engine = Scorer(model, tok, ScoringConfig(batch_size=args.batch_size, progress=False))
    plain = Scorer(model, tok, ScoringConfig(batch_size=args.batch_size, prefix_cache=False, progress=False))
    # warm-up: kernel selection and, on a GPU, the allocator and cuBLAS plans for every batch shape
    warm = prompts if device.type == "cuda" else prompts[:2]
    engine.score(warm), plain.score(warm)
    timed(
        "engine", lambda: Scorer(model, tok, ScoringConfig(batch_size=args.batch_size, progress=False)).score(prompts)
    )
    timed("engine, no prefix cache", lambda: plain.score(prompts))
    timed("naive one-by-one forward", lambda: naive(model, tok, prompts, yes, no))
    timed("reference: generate(128)", lambda: reference(model, tok, prompts, yes, no, args.batch_size))
    if args.forced_n:
        sub = prompts[: args.forced_n]
        timed(
            f"reference, all 128 steps ({len(sub)} prompts)",
            lambda: reference(model, tok, sub, yes, no, args.batch_size, True),
            len(sub),
        )

    ref_rate = len(prompts) / rows[3][1]
    sub_tokens = sum(len(ids) for ids in tok(prompts[: args.forced_n])["input_ids"]) if args.forced_n else 0
    table = Table(title=f"scoring {len(prompts)} movie test prompts, {args.base}, {args.dtype}, {where}")
    for col in ("path", "s", "prompts/s", "× reference", "GFLOP/s", f"% of {args.dtype} matmul", "max |Δp| vs naive"):
        table.add_column(col, justify="left" if col == "path" else "right")
    for name, sec, n in reversed(rows):
        gflops = 2 * n_params * (tokens if n == len(prompts) else sub_tokens) / sec / 1e9
        delta = np.abs(scores[name] - scores["naive one-by-one forward"][:n]).max()
        table.add_row(
            name,
            f"{sec:.1f}",
            f"{n / sec:.2f}",
            f"{n / sec / ref_rate:.1f}",
            f"{gflops:.0f}",
            f"{100 * gflops / peak[args.dtype][1]:.0f} %",
            f"{delta:.1e}",
        )
    n = peak["bf16"][0]
    note = f"matmul {n}³ in this run: bf16 {peak['bf16'][1]:.0f} GFLOP/s, fp32 {peak['fp32'][1]:.0f} GFLOP/s" + (
        " (fp32 runs as TF32 only if torch allows it)" if device.type == "cuda" else ""
    )
    record.save("scoring", [table], args.quick, [note])


if __name__ == "__main__":
    main()
