"""Caser (Tang & Wang, WSDM 2018): horizontal and vertical convolutions over the history "image".

The history_len x dim matrix of history embeddings is read by horizontal filters of every height 1..history_len
(union-level patterns, max-pooled over time) and by vertical filters (weighted sums of the items).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from tallrec.baselines.base import IdModel
from tallrec.config import BaselineParams


class Model(IdModel):
    def __init__(self, cfg: BaselineParams, n_items: int, history_len: int):
        super().__init__(cfg, n_items, user_dim=cfg.dim, history_len=history_len)
        # a (h x dim) 2-d filter over the 1-channel image is a 1-d convolution over time with dim
        # input channels; Conv1d is the same function and much faster on CPU
        self.horizontal = nn.ModuleList(nn.Conv1d(cfg.dim, cfg.caser_h_filters, h) for h in range(1, history_len + 1))
        self.vertical = nn.Conv2d(1, cfg.caser_v_filters, (history_len, 1))
        self.drop = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(cfg.caser_h_filters * history_len + cfg.caser_v_filters * cfg.dim, cfg.dim)

    def encode(self, batch):
        x = self.history(batch)  # [B, L, d]
        hs = [F.relu(conv(x.transpose(1, 2))).amax(2) for conv in self.horizontal]  # each [B, n_h]
        v = self.vertical(x[:, None]).flatten(1)  # [B, n_v * d]
        return F.relu(self.fc(self.drop(torch.cat(hs + [v], 1))))
