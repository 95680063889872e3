"""Every path the pipeline reads or writes, relative to the project root (where DVC runs stages)."""

from pathlib import Path

DATA = Path("data")
RAW = DATA / "raw"
PROCESSED = DATA / "processed"
SHOTS = PROCESSED / "shots"
MODELS = Path("models")
METRICS = Path("metrics")
PARAMS = Path("params.yaml")
SCRATCH = Path("scratch")  # ignored by git: checkpoints of unfinished runs
RUN_LOGS = Path("logs")  # ignored by git, no DVC output: wall times, resume points, the machine's facts

SPLITS = ("train", "valid", "test")
ADAPTER_CONFIG = "adapter_config.json"  # the two files of a peft adapter folder
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def processed_dir(domain: str) -> Path:
    return PROCESSED / domain


def split_path(domain: str, split: str) -> Path:
    return PROCESSED / domain / f"{split}.parquet"


def report_path(domain: str) -> Path:
    return PROCESSED / domain / "report.json"


def shot_path(domain: str, k: int, seed: int) -> Path:
    """K-shot training draw; `domain` is movie, book or both."""
    return SHOTS / domain / f"k{k}_seed{seed}.parquet"


# ---------------------------------------------------------------- LLM stages


def base_model_dir(name: str) -> Path:
    """Dequantized backbone (safetensors + tokenizer), or a pointer to a Hugging Face model."""
    return MODELS / "base" / name


def alpaca_adapter_dir(name: str) -> Path:
    return MODELS / "alpaca" / name


def rec_adapter_dir(name: str, config: str | None = None) -> Path:
    """models/rec/<name>/ or, with a config such as tallrec_movie_k64_seed0, its adapter folder."""
    return MODELS / "rec" / name / config if config else MODELS / "rec" / name


def llm_summary_path(config: str) -> Path:
    return METRICS / "llm" / f"{config}.json"


def llm_predictions_path(config: str, test_domain: str) -> Path:
    return METRICS / "predictions" / "llm" / config / f"{test_domain}.parquet"


def checkpoint_dir(fingerprint: str) -> Path:
    """Resume state of an unfinished training run: scratch, never a DVC output, removed when it is done."""
    return SCRATCH / "checkpoints" / fingerprint


LLM_METRICS = METRICS / "llm.json"  # the experiment's LLM AUCs under stable keys: columns of `dvc exp show`
BASELINE_METRICS = METRICS / "baselines.json"  # the baselines' AUC at the experiment's K
LLM_CURVES = METRICS / "curves" / "llm"  # dvclive training curves, one folder per configuration


# ---------------------------------------------------------------- references and the report


def reference_predictions_path(name: str, domain: str, k: int, seed: int) -> Path:
    """A parameter-free reference's scores of one test set (like_share ignores K and seed, popularity
    reads the K-shot draw)."""
    return METRICS / "predictions" / "references" / name / f"{domain}_k{k}_seed{seed}.parquet"


REPORTS = Path("reports")
IMPORTED = REPORTS / "imported"  # predictions and summaries of `dvc exp run` experiments, one folder each
PLOTS = REPORTS / "plots"  # data files of the `dvc plots` definitions (ROC curves, AUC vs K)


# ---------------------------------------------------------------- baselines


def text_embeddings_path(domain: str) -> Path:
    return MODELS / "text_embeddings" / f"{domain}.parquet"


def baseline_metrics_path(model: str) -> Path:
    """Every domain x K x seed of one baseline (detail; the headline is BASELINE_METRICS)."""
    return METRICS / "baselines" / f"{model}.json"


def baseline_predictions_path(model: str, domain: str, k: int, seed: int) -> Path:
    return METRICS / "predictions" / "baselines" / model / f"{domain}_k{k}_seed{seed}.parquet"


def run_log_path(name: str) -> Path:
    return RUN_LOGS / f"{name}.json"
