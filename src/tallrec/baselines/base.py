"""What every baseline shares: the config, the batch encoding, the scoring head and the training loop.

A baseline scores (history, target item) with one logit; sigmoid(logit) is trained with MSE against
the like/dislike label (the TALLRec paper's protocol), Adam at lr 1e-3, and the weight decay is picked
from a list by validation AUC. Each model file defines a `Model(Baseline)` with

    encode(batch) -> user state [B, user_dim]     (reads the history)
    items(batch, key) -> item vectors [..., item_dim]   (key "target" or "candidates")

and the shared `Head` turns (user state, item vector) into a logit; `Baseline.loss` is that MSE, which the
DROS models override with `dros_loss`. The head is additive plus a dot
product so that scoring every item for one user (DROS needs it) costs B x V x dim, not more.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import torch
import torch.nn as nn
import torch.nn.functional as F

from tallrec.config import BaselineParams
from tallrec.metrics import auc

UNK = 0  # the shared id of every item the K-shot training rows do not show often enough


# ---------------------------------------------------------------- data -> tensors


@dataclass
class Vocab:
    """Item ids from the training rows; everything else (and rare items) shares UNK."""

    index: dict[str, int]
    popularity: torch.Tensor  # [V] how often each id occurs in the training rows, sums to 1 (DROS)

    @property
    def size(self) -> int:
        return len(self.popularity)

    @classmethod
    def build(cls, train: pl.DataFrame, min_count: int) -> "Vocab":
        items = train["history_item_ids"].explode().to_list() + train["target_item_id"].to_list()
        values, counts = np.unique(np.asarray(items, dtype=object).astype(str), return_counts=True)
        kept = [v for v, c in zip(values, counts) if c >= min_count]  # np.unique sorts: ids are stable
        index = {item: i + 1 for i, item in enumerate(kept)}
        pop = np.zeros(len(kept) + 1)
        for v, c in zip(values, counts):
            pop[index.get(v, UNK)] += c
        return cls(index, torch.tensor(pop / pop.sum(), dtype=torch.float32))


def pad_history(ids: list, labels: list, length: int) -> tuple[list, list]:
    """The protocol: a history shorter than `length` (data.<domain>.history_len) is padded with the
    user's last item (at the end)."""
    ids, labels = list(ids)[-length:], list(labels)[-length:]
    missing = length - len(ids)
    return ids + [ids[-1]] * missing, labels + [labels[-1]] * missing


def encode(
    df: pl.DataFrame, vocab: Vocab, history_len: int, text_index: dict[str, int] | None = None
) -> dict[str, torch.Tensor]:
    """Tensors for a split: history ids/labels [N, history_len], target [N], label [N]; text rows when given."""
    if text_index is not None:
        missing = set(df["history_item_ids"].explode().to_list() + df["target_item_id"].to_list()) - text_index.keys()
        if missing:
            raise ValueError(
                f"{len(missing)} items have no text vector (e.g. {sorted(missing)[0]!r}): rerun the text_embed stage"
            )
    hist, hist_label, hist_text = [], [], []
    for ids, labels in zip(df["history_item_ids"].to_list(), df["history_labels"].to_list()):
        ids, labels = pad_history(ids, labels, history_len)
        hist.append([vocab.index.get(i, UNK) for i in ids])
        hist_label.append(labels)
        if text_index is not None:
            hist_text.append([text_index[i] for i in ids])
    targets = df["target_item_id"].to_list()
    batch = {
        "hist": torch.tensor(hist, dtype=torch.long),
        "hist_label": torch.tensor(hist_label, dtype=torch.long),
        "target": torch.tensor([vocab.index.get(t, UNK) for t in targets], dtype=torch.long),
        "label": torch.tensor(df["label"].to_list(), dtype=torch.float32),
    }
    if text_index is not None:
        batch["hist_text"] = torch.tensor(hist_text, dtype=torch.long)
        batch["target_text"] = torch.tensor([text_index[t] for t in targets], dtype=torch.long)
    return batch


def take(batch: dict[str, torch.Tensor], rows: torch.Tensor) -> dict[str, torch.Tensor]:
    return {k: v[rows] for k, v in batch.items()}


def n_rows(batch: dict[str, torch.Tensor]) -> int:
    return len(batch["label"])


# ---------------------------------------------------------------- shared modules


class Head(nn.Module):
    """logit = w . relu(U h + I e) + <P h, Q e> + b: an MLP on the pair that stays decomposable."""

    def __init__(self, user_dim: int, item_dim: int, dim: int):
        super().__init__()
        self.user = nn.Linear(user_dim, 2 * dim)
        self.item = nn.Linear(item_dim, 2 * dim, bias=False)
        self.out = nn.Linear(dim, 1)

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        hu, hd = self.user(h).chunk(2, -1)
        eu, ed = self.item(e).chunk(2, -1)
        if e.dim() == 2 and h.shape[0] != e.shape[0]:  # all candidates for every user: [B, V]
            hu, hd = hu[:, None], hd[:, None]
        return self.out(F.relu(hu + eu)).squeeze(-1) + (hd * ed).sum(-1)


class Baseline(nn.Module):
    """Item-id and like/dislike-label embeddings, the logit of (user state, target item) and the loss.

    A subclass adds its sequence encoder and the `Head`, and a DROS model overrides `loss`. The runner sets
    `popularity` (the vocabulary's, which DROS's loss weights every item by)."""

    popularity: torch.Tensor | None = None

    def __init__(self, cfg: BaselineParams, n_items: int):
        super().__init__()
        self.cfg = cfg
        self.n_items = n_items
        self.item_emb = nn.Embedding(n_items, cfg.dim)
        # the LLM is told which history items were liked; the baselines get the same information
        self.label_emb = nn.Embedding(2, cfg.dim)

    def history(self, batch) -> torch.Tensor:
        """Id embeddings of the history, plus the like/dislike embedding unless `history_labels` is off."""
        x = self.item_emb(batch["hist"])
        return x + self.label_emb(batch["hist_label"]) if self.cfg.history_labels else x

    def forward(self, batch) -> torch.Tensor:
        return self.head(self.encode(batch), self.items(batch, "target"))

    def loss(self, batch) -> torch.Tensor:
        return F.mse_loss(torch.sigmoid(self(batch)), batch["label"])


class IdModel(Baseline):
    """A baseline whose items are their id embeddings only; subclasses add the sequence encoder."""

    def __init__(self, cfg: BaselineParams, n_items: int, user_dim: int, history_len: int):
        super().__init__(cfg, n_items)
        self.history_len = history_len
        self.head = Head(user_dim, cfg.dim, cfg.dim)

    def items(self, batch, key: str) -> torch.Tensor:
        ids = batch["target"] if key == "target" else torch.arange(self.n_items)
        return self.item_emb(ids)


# ---------------------------------------------------------------- DROS's loss


def dros_loss(model: nn.Module, batch, cfg: BaselineParams, popularity: torch.Tensor) -> torch.Tensor:
    """MSE plus DROS's distributionally robust term (Yang et al., SIGIR 2023); the DROS models' `loss`.

    DROS bounds the loss under the worst-case data distribution in a KL ball around the nominal one
    (item popularity in the training rows); the dual is beta * log E_nominal[exp(loss_j / beta)], and the
    loss is mse + alpha * that (the paper's form; the authors' code leaves out the leading beta, which
    only matters for beta != 1). As in the authors' code, every item j is scored for the user with an
    implicit label 0, except the target item, whose squared error uses the observed label.
    """
    h = model.encode(batch)
    y_hat = torch.sigmoid(model.head(h, model.items(batch, "target")))
    y = batch["label"]
    mse = F.mse_loss(y_hat, y)
    all_hat = torch.sigmoid(model.head(h, model.items(batch, "candidates")))  # [B, V]
    w = popularity[None, :]
    inner = (w * torch.exp(all_hat**2 / cfg.dros_beta)).sum(-1)
    w_t = popularity[batch["target"]]
    inner = inner - w_t * torch.exp(y_hat**2 / cfg.dros_beta) + w_t * torch.exp((y_hat - y) ** 2 / cfg.dros_beta)
    return mse + cfg.dros_alpha * cfg.dros_beta * torch.log(inner + 1e-24).mean()


# ---------------------------------------------------------------- training


@torch.no_grad()
def predict(model: nn.Module, batch, cfg: BaselineParams, bf16: bool = False) -> np.ndarray:
    model.eval()
    out = []
    for start in range(0, n_rows(batch), cfg.eval_batch_size):
        rows = torch.arange(start, min(start + cfg.eval_batch_size, n_rows(batch)))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out.append(torch.sigmoid(model(take(batch, rows)).float()))
    return torch.cat(out).numpy().astype(np.float64)


@dataclass
class Fit:
    weight_decay: float
    valid_auc: float
    epochs: int
    state: dict = field(repr=False)


def train_one(make_model, train, valid, cfg: BaselineParams, seed: int, weight_decay: float, bf16: bool = False) -> Fit:
    """Adam + MSE with early stopping on validation AUC; returns the best epoch's weights."""
    torch.manual_seed(seed)  # same init for every weight decay: only the decay differs
    model = make_model()
    opt = torch.optim.Adam(
        model.parameters(), lr=cfg.lr, weight_decay=weight_decay, fused=True
    )  # 5x faster step on CPU
    order = torch.Generator().manual_seed(seed)
    best = Fit(weight_decay, -1.0, 0, {})
    stale = 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        perm = torch.randperm(n_rows(train), generator=order)
        for start in range(0, len(perm), cfg.batch_size):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = model.loss(take(train, perm[start : start + cfg.batch_size]))
            opt.zero_grad(set_to_none=True)
            loss.float().backward()
            opt.step()
        score = auc(valid["label"].numpy(), predict(model, valid, cfg, bf16))
        if score > best.valid_auc:  # a NaN AUC (diverged scores) is never an improvement
            best, stale = Fit(weight_decay, score, epoch, copy.deepcopy(model.state_dict())), 0
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    return best


def fit_and_select(
    make_model, train, valid, cfg: BaselineParams, seed: int, bf16: bool = False
) -> tuple[nn.Module, Fit, dict]:
    """Train once per weight decay; keep the one with the best validation AUC (first on ties)."""
    fits = [train_one(make_model, train, valid, cfg, seed, wd, bf16) for wd in cfg.weight_decays]
    best = max(fits, key=lambda f: f.valid_auc)  # max keeps the first of equal values
    if not best.state:
        raise ValueError("no epoch of any weight decay gave a finite validation AUC (the scores diverged)")
    torch.manual_seed(seed)
    model = make_model()
    model.load_state_dict(best.state)
    return model, best, {str(f.weight_decay): round(f.valid_auc, 6) for f in fits}


class GRUModel(IdModel):
    """GRU4Rec's network (Hidasi et al., ICLR 2016): a GRU reads the history; its last state is the
    user. DROS trains the same network with its own loss."""

    def __init__(self, cfg: BaselineParams, n_items: int, history_len: int):
        super().__init__(cfg, n_items, user_dim=cfg.hidden, history_len=history_len)
        self.drop = nn.Dropout(cfg.dropout)
        self.gru = nn.GRU(cfg.dim, cfg.hidden, cfg.layers, batch_first=True)

    def encode(self, batch):
        _, h = self.gru(self.drop(self.history(batch)))
        return h[-1]


class GRUBertModel(Baseline):
    """GRU-BERT's network: GRU4Rec whose items are [id embedding ; frozen text vector]; DROS-BERT shares it."""

    def __init__(self, cfg: BaselineParams, n_items: int, text: torch.Tensor):
        super().__init__(cfg, n_items)
        self.register_buffer("text", text, persistent=False)  # [n_texts, text_dim], frozen
        item_dim = cfg.dim + text.shape[1]
        self.drop = nn.Dropout(cfg.dropout)
        self.gru = nn.GRU(item_dim, cfg.bert_hidden, cfg.bert_layers, batch_first=True)
        self.head = Head(cfg.bert_hidden, item_dim, cfg.dim)
        self.candidate_text = None  # text rows of the vocabulary's items, set by the runner for DROS

    def encode(self, batch):
        x = torch.cat([self.history(batch), self.text[batch["hist_text"]]], -1)
        _, h = self.gru(self.drop(x))
        return h[-1].float()

    def items(self, batch, key: str):
        if key == "target":
            return torch.cat([self.item_emb(batch["target"]), self.text[batch["target_text"]]], -1)
        return torch.cat([self.item_emb.weight, self.text[self.candidate_text]], -1)


class DrosLoss:
    """Mixed in ahead of a network: DROS's loss in place of the plain MSE."""

    def loss(self, batch) -> torch.Tensor:
        return dros_loss(self, batch, self.cfg, self.popularity)
