"""The `tallrec` command: one subcommand per pipeline stage, plus tools for people."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from tallrec import paths
from tallrec.config import load_params
from tallrec.io import DataError
from tallrec.runtime import quiet_libraries

quiet_libraries()  # before transformers, peft or bitsandbytes are imported

console = Console(stderr=True)


class OneLineErrors(typer.core.TyperGroup):
    """Bad input ends every command the same way: one line naming the file, the line and the problem."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (DataError, ValueError, FileNotFoundError) as e:
            console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None


app = typer.Typer(cls=OneLineErrors, add_completion=False, no_args_is_help=True, help=__doc__)


@app.command()
def fetch(params_file: Path = typer.Option(paths.PARAMS, "--params")) -> None:
    """Copy the raw datasets from the mirror (or download them) into data/raw/ and verify sha256."""
    from tallrec.data import fetch as run_fetch

    written = run_fetch(load_params(params_file).data.mirror)
    console.print(f"fetched and verified {len(written)} files into {paths.RAW}/")


@app.command()
def prepare(
    domain: str = typer.Argument(..., help="movie, book or alpaca"),
    params_file: Path = typer.Option(paths.PARAMS, "--params"),
) -> None:
    """Turn one domain's raw files into data/processed/<domain>/{train,valid,test}.parquet."""
    from tallrec.data import prepare as run_prepare

    report = run_prepare(domain, load_params(params_file))
    console.print(f"{domain}: {report.get('split_rows', report)}")


@app.command()
def sample(params_file: Path = typer.Option(paths.PARAMS, "--params")) -> None:
    """Draw the K-shot training sets for every K, seed and domain in params.yaml."""
    from tallrec.sampling import sample as run_sample

    written = run_sample(load_params(params_file))
    console.print(f"wrote {len(written)} K-shot draws into {paths.SHOTS}/")


@app.command()
def export(
    domain: str = typer.Option(..., help="movie or book"),
    split: str = typer.Option(..., help="train, valid or test"),
    out: Optional[Path] = typer.Option(None, help="default: data/export/<domain>_<split>.json"),
) -> None:
    """Write a split in the original TALLRec repo's JSON format (list of instruction/input/output)."""
    from tallrec.data import export_original_json

    out = out or Path("data/export") / f"{domain}_{split}.json"
    n = export_original_json(domain, split, out)
    console.print(f"wrote {n} records to {out}")


# (more stage commands are added below this line by the LLM and baseline modules)


def _load_options(adapter, base, dtype, quantize, device, batch_size):
    from tallrec.scoring import LoadConfig

    return LoadConfig(adapter=adapter, base=base, dtype=dtype, quantize=quantize, device=device, batch_size=batch_size)


@app.command()
def score(
    input: Path = typer.Option(..., "--input", help="JSONL, one user a line: liked, disliked (lists of item texts), target (item text), optional domain"),
    adapter: Optional[str] = typer.Option(None, help="peft adapter folder, or its name under models/"),
    base: Optional[str] = typer.Option(None, help="backbone folder or catalog name (default: the adapter's)"),
    output: Optional[Path] = typer.Option(None, help="default: <input>.scored.jsonl"),
    domain: str = typer.Option("movie", help="domain of lines that name none"),
    on_error: str = typer.Option("skip", help="bad lines: skip (report each, score the rest) or fail (exit 1, write nothing)"),
    batch_size: int = typer.Option(8, min=1),
    dtype: str = typer.Option("auto", help="auto, bf16, fp16 or fp32"),
    quantize: str = typer.Option("none", help="none, 8bit or 4bit (bitsandbytes, for a GPU)"),
    device: Optional[str] = typer.Option(None, help="default: cuda when present, else cpu"),
    params_file: Path = typer.Option(paths.PARAMS, "--params"),
) -> None:
    """Write every line of a JSONL file with p_yes (the model's probability of "Yes.") added."""

    from tallrec.scoring import run_score

    output = output or input.with_name(input.stem + ".scored.jsonl")
    load = _load_options(adapter, base, dtype, quantize, device, batch_size)
    n, problems, shortened = run_score(input, output, domain, on_error, load, params_file)
    for problem in problems:  # the user's texts and paths, escaped: they are not rich markup
        console.print(f"[yellow]skipped:[/] {escape(problem)}", highlight=False, soft_wrap=True)
    console.print(escape(f"scored {n} lines into {output}" + (f", skipped {len(problems)} bad lines" if problems else "")
                         + (f"; {shortened} prompts too long for the model lost their oldest history items"
                            " (history_dropped in their lines)" if shortened else "")),
                  highlight=False, soft_wrap=True)


@app.command()
def rank(
    history: Path = typer.Option(..., help="JSON object: liked, disliked (lists of item texts), optional domain"),
    candidates: Path = typer.Option(..., help="candidate item texts, one a line (or a .json list)"),
    top: int = typer.Option(10, help="how many to show"),
    adapter: Optional[str] = typer.Option(None, help="peft adapter folder, or its name under models/"),
    base: Optional[str] = typer.Option(None, help="backbone folder or catalog name (default: the adapter's)"),
    domain: str = typer.Option("movie", help="domain when the history names none"),
    batch_size: int = typer.Option(8, min=1),
    dtype: str = typer.Option("auto", help="auto, bf16, fp16 or fp32"),
    quantize: str = typer.Option("none", help="none, 8bit or 4bit (bitsandbytes, for a GPU)"),
    device: Optional[str] = typer.Option(None, help="default: cuda when present, else cpu"),
    params_file: Path = typer.Option(paths.PARAMS, "--params"),
) -> None:
    """Score many candidate items for one user and print the best first."""
    from rich.console import Console

    from tallrec.scoring import run_rank

    load = _load_options(adapter, base, dtype, quantize, device, batch_size)
    table, dropped = run_rank(history, candidates, top, domain, load, params_file)
    Console().print(table)
    if dropped:
        console.print(f"dropped {dropped} duplicate candidate{'s' if dropped != 1 else ''} (each item is ranked once)")


# ---------------------------------------------------------------- LLM stages (tallrec.model, tuning, evaluation)


@app.command("base-model")
def base_model(
    params_file: Path = typer.Option(paths.PARAMS, "--params"),
    gguf: Optional[Path] = typer.Option(None, help="a catalog backbone's joined GGUF file, instead of its installed packages (sha256 still checked)"),
) -> None:
    """Turn model.name into models/base/<name>/: verify and dequantize a catalog GGUF once (or record a HF model)."""
    from tallrec.model import build_base

    cfg = load_params(params_file).model
    console.print(f"base model ready in {build_base(cfg.name, cfg.source, gguf=gguf)}/")


@app.command("alpaca-tune")
def alpaca_tune(params_file: Path = typer.Option(paths.PARAMS, "--params")) -> None:
    """Stage 1: LoRA-tune the base on Alpaca samples into models/alpaca/<name>/."""
    from tallrec.runtime import configure_threads
    from tallrec.tuning import alpaca_tune as run

    params = load_params(params_file)
    configure_threads(params.model.threads)
    state = run(params)
    console.print(f"alpaca_tune: {state.epoch} epochs, {state.global_step} steps, last loss {state.history[-1]['loss']:.4f}")


@app.command("rec-tune")
def rec_tune(params_file: Path = typer.Option(paths.PARAMS, "--params")) -> None:
    """Stage 2: LoRA-tune on every configured K-shot draw into models/rec/<name>/<config>/ (resumable)."""
    from tallrec.runtime import configure_threads
    from tallrec.tuning import rec_tune as run

    params = load_params(params_file)
    configure_threads(params.model.threads)
    for r, state in run(params):
        best = f"{state.best_auc:.4f} at epoch {state.best_epoch}" if state.best_auc is not None else "none (every AUC was NaN)"
        console.print(f"{r.name}: best valid AUC {best}, {state.epoch} epochs")


@app.command("evaluate")
def evaluate_cmd(params_file: Path = typer.Option(paths.PARAMS, "--params")) -> None:
    """Score every configuration (and the untuned backbone) on the test sets; AUC into metrics/."""
    from tallrec.evaluation import COMBINED, evaluate
    from tallrec.runtime import configure_threads

    params = load_params(params_file)
    configure_threads(params.model.threads)
    evaluate(params)
    console.print(f"wrote {COMBINED}")


# ---------------------------------------------------------------- baselines


@app.command("text-embed")
def text_embed_cmd(
    domain: str = typer.Argument(..., help="movie or book"),
    params_file: Path = typer.Option(paths.PARAMS, "--params"),
) -> None:
    """Embed every item text of a domain with all-MiniLM-L6-v2 into models/text_embeddings/<domain>.parquet."""
    from tallrec.baselines.text_embed import text_embed

    out = text_embed(domain, load_params(params_file))
    console.print(f"wrote {out}")


@app.command("baseline")
def baseline_cmd(
    model: str = typer.Argument(..., help="gru4rec, caser, sasrec, dros, gru_bert or dros_bert"),
    params_file: Path = typer.Option(paths.PARAMS, "--params"),
) -> None:
    """Train one baseline on every domain x K x seed (weight decay chosen on valid); AUC into metrics/."""
    from tallrec.baselines.run import run_model

    summary = run_model(model, load_params(params_file))
    for domain, by_k in summary.items():
        cells = ", ".join(f"{k} {v['auc_mean']:.4f}±{v['auc_std']:.4f}" for k, v in by_k.items())
        console.print(f"{model} {domain}: {cells}")
