"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over the history; last position is the user."""

from __future__ import annotations

import torch
import torch.nn as nn

from tallrec.baselines.base import IdModel
from tallrec.config import BaselineParams


class Model(IdModel):
    def __init__(self, cfg: BaselineParams, n_items: int, history_len: int):
        super().__init__(cfg, n_items, user_dim=cfg.dim, history_len=history_len)
        self.pos_emb = nn.Embedding(history_len, cfg.dim)
        layer = nn.TransformerEncoderLayer(
            cfg.dim, cfg.sasrec_heads, dim_feedforward=cfg.dim, dropout=cfg.dropout, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, cfg.sasrec_blocks, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.register_buffer("causal", nn.Transformer.generate_square_subsequent_mask(history_len), persistent=False)

    def encode(self, batch):
        x = self.history(batch) * self.cfg.dim**0.5 + self.pos_emb(torch.arange(self.history_len))
        x = self.blocks(self.drop(x), mask=self.causal, is_causal=True)
        return self.norm(x[:, -1])
