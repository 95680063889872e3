"""GRU-BERT: GRU4Rec whose items are [id embedding ; frozen sentence embedding of the item text].

The TALLRec paper encodes titles with BERT and runs a 4-layer GRU of hidden size 1024. BERT-base
cannot be downloaded here; the text vectors come from all-MiniLM-L6-v2 (tallrec.baselines.text_embed),
computed once per domain. Items never seen in training share the UNK id but keep their own text
vector, which is how this model tells unseen items apart. DROS-BERT is this network with DROS's loss.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from tallrec.baselines.base import Baseline, Head
from tallrec.config import BaselineParams


class Model(Baseline):
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
