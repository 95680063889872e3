"""The `tallrec` command: the pipeline's stages by hand (the same `main` functions dvc.yaml runs through
`python -m tallrec.stages.<stage>`), plus `score`, `rank` and `export` for people."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from tallrec import paths
from tallrec.config import load_params
from tallrec.runtime import quiet_libraries
from tallrec.stages import expected_errors, one_line

quiet_libraries()  # before transformers, peft or bitsandbytes are imported

console = Console(stderr=True)


class OneLineErrors(typer.core.TyperGroup):
    """Bad input ends every command the same way: one line naming the file, the line and the problem."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except expected_errors() as e:
            console.print(one_line(e), highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None


def say(message: str) -> None:
    console.print(message, highlight=False, soft_wrap=True)


app = typer.Typer(cls=OneLineErrors, add_completion=False, no_args_is_help=True, help=__doc__)


@app.callback()
def _numerics(ctx: typer.Context) -> None:
    """Every command but score and rank runs a stage: it needs the canonical numerics (tallrec.launch)."""
    from tallrec import numerics
    from tallrec.launch import FREE_COMMANDS

    if ctx.invoked_subcommand not in FREE_COMMANDS:
        numerics.require()


# readable=False: click would refuse an unreadable file with a usage box; tallrec.io says it in one line
PARAMS_OPTION = typer.Option(paths.PARAMS, "--params", readable=False)


@app.command()
def fetch(params_file: Path = PARAMS_OPTION) -> None:
    """Copy the raw datasets from the mirror (or download them) into data/raw/ and verify sha256."""
    from tallrec.stages import fetch as stage

    say(stage.main(load_params(params_file)))


@app.command()
def prepare(domain: str = typer.Argument(..., help="movie, book or alpaca"), params_file: Path = PARAMS_OPTION) -> None:
    """Turn one domain's raw files into data/processed/<domain>/{train,valid,test}.parquet."""
    from tallrec.stages import prepare as stage

    say(stage.main(load_params(params_file), domain))


@app.command()
def sample(params_file: Path = PARAMS_OPTION) -> None:
    """Draw the K-shot training sets for every K, seed and domain in params.yaml."""
    from tallrec.stages import sample as stage

    say(stage.main(load_params(params_file)))


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


def _load_options(adapter, base, dtype, quantize, device, batch_size):
    from tallrec.serving import LoadConfig

    return LoadConfig(adapter=adapter, base=base, dtype=dtype, quantize=quantize, device=device, batch_size=batch_size)


@app.command()
def score(
    input: Path = typer.Option(
        ...,
        "--input",
        readable=False,
        help="JSONL, one user a line: liked, disliked (lists of item texts), target (item text), optional domain",
    ),
    adapter: Optional[str] = typer.Option(None, help="peft adapter folder, or its name under models/"),
    base: Optional[str] = typer.Option(None, help="backbone folder or catalog name (default: the adapter's)"),
    output: Optional[Path] = typer.Option(None, help="default: <input>.scored.jsonl"),
    domain: str = typer.Option("movie", help="domain of lines that name none"),
    on_error: str = typer.Option(
        "skip", help="bad lines: skip (report each, score the rest) or fail (exit 1, write nothing)"
    ),
    batch_size: int = typer.Option(8, min=1),
    dtype: str = typer.Option("auto", help="auto, bf16, fp16 or fp32"),
    quantize: str = typer.Option("none", help="none, 8bit or 4bit (bitsandbytes, for a GPU)"),
    device: Optional[str] = typer.Option(None, help="default: cuda when present, else cpu"),
    params_file: Path = typer.Option(paths.PARAMS, "--params", readable=False),
) -> None:
    """Write every line of a JSONL file with p_yes (the model's probability of "Yes.") added."""

    from tallrec.serving import run_score

    output = output or input.with_name(input.stem + ".scored.jsonl")
    load = _load_options(adapter, base, dtype, quantize, device, batch_size)
    n, problems, shortened = run_score(input, output, domain, on_error, load, params_file)
    for problem in problems:  # the user's texts and paths, escaped: they are not rich markup
        console.print(f"[yellow]skipped:[/] {escape(problem)}", highlight=False, soft_wrap=True)
    console.print(
        escape(
            f"scored {n} lines into {output}"
            + (f", skipped {len(problems)} bad lines" if problems else "")
            + (
                f"; {shortened} prompts too long for the model lost their oldest history items"
                " (history_dropped in their lines)"
                if shortened
                else ""
            )
        ),
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def rank(
    history: Path = typer.Option(
        ..., readable=False, help="JSON object: liked, disliked (lists of item texts), optional domain"
    ),
    candidates: Path = typer.Option(..., readable=False, help="candidate item texts, one a line (or a .json list)"),
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

    from tallrec.serving import run_rank

    load = _load_options(adapter, base, dtype, quantize, device, batch_size)
    table, dropped = run_rank(history, candidates, top, domain, load, params_file)
    Console().print(table)
    if dropped:
        console.print(f"dropped {dropped} duplicate candidate{'s' if dropped != 1 else ''} (each item is ranked once)")


# ---------------------------------------------------------------- LLM stages


@app.command("base-model")
def base_model(
    params_file: Path = PARAMS_OPTION,
    gguf: Optional[Path] = typer.Option(
        None, help="a catalog backbone's joined GGUF file, instead of its installed packages (sha256 still checked)"
    ),
) -> None:
    """Turn model.name into models/base/<name>/: verify and dequantize a catalog GGUF once (or record a HF model)."""
    from tallrec.stages import base_model as stage

    say(stage.main(load_params(params_file), gguf))


@app.command("alpaca-tune")
def alpaca_tune(params_file: Path = PARAMS_OPTION) -> None:
    """Stage 1: LoRA-tune the base on Alpaca samples into models/alpaca/<name>/."""
    from tallrec.stages import alpaca_tune as stage

    say(stage.main(load_params(params_file)))


@app.command("rec-tune")
def rec_tune(params_file: Path = PARAMS_OPTION) -> None:
    """Stage 2: every configuration of rec_tune (variants x train domains x ks x seeds), one after another."""
    from tallrec.stages import rec_tune as stage
    from tallrec.config import rec_grid

    params = load_params(params_file)
    for run in rec_grid(params.rec_tune):
        say(stage.main(params, run.variant, run.train_domain, run.k, run.seed))


@app.command("evaluate")
def evaluate_cmd(params_file: Path = PARAMS_OPTION) -> None:
    """Score the untuned backbone and every configuration on the test sets; AUC into metrics/llm/."""
    from tallrec.stages import evaluate, evaluate_icl
    from tallrec.config import rec_grid

    params = load_params(params_file)
    say(evaluate_icl.main(params))
    for run in rec_grid(params.rec_tune):
        say(evaluate.main(params, run.variant, run.train_domain, run.k, run.seed))


@app.command("summarize")
def summarize_cmd(params_file: Path = PARAMS_OPTION) -> None:
    """The experiment's headline metrics (metrics/llm.json, metrics/baselines.json)."""
    from tallrec.stages import summarize as stage

    say(stage.main(load_params(params_file)))


# ---------------------------------------------------------------- baselines


@app.command("text-embed")
def text_embed_cmd(domain: str = typer.Argument(..., help="movie or book"), params_file: Path = PARAMS_OPTION) -> None:
    """Embed every item text of a domain with all-MiniLM-L6-v2 into models/text_embeddings/<domain>.parquet."""
    from tallrec.stages import text_embed as stage

    say(stage.main(load_params(params_file), domain))


@app.command("baseline")
def baseline_cmd(
    model: str = typer.Argument(..., help="gru4rec, caser, sasrec, dros, gru_bert or dros_bert"),
    params_file: Path = PARAMS_OPTION,
) -> None:
    """Train one baseline on every domain x K x seed (weight decay chosen on valid); AUC into metrics/baselines/."""
    from tallrec.stages import baseline as stage

    say(stage.main(load_params(params_file), model))


# ---------------------------------------------------------------- references and the report


@app.command("references")
def references_cmd(params_file: Path = PARAMS_OPTION) -> None:
    """Score the parameter-free references (like-share, popularity) on every test set."""
    from tallrec.stages import references as stage

    say(stage.main(load_params(params_file)))


@app.command("import-experiments")
def import_experiments_cmd(
    names: Optional[list[str]] = typer.Argument(None, help="experiment names (default: all)"),
) -> None:
    """Copy `dvc exp run` experiments' LLM predictions into reports/imported/ for the report."""
    from tallrec.experiments import import_experiments

    for line in import_experiments(names):
        say(line)


@app.command("report")
def report_cmd(params_file: Path = PARAMS_OPTION) -> None:
    """Table 3, Figures 3 and 4 and the dvc plots data into reports/."""
    from tallrec.stages import report as stage

    say(stage.main(load_params(params_file)))
