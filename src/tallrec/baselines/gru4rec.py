"""GRU4Rec (Hidasi et al., ICLR 2016): a GRU reads the history; its last state is the user.

DROS (tallrec.baselines.dros) trains this same network with its own loss.
"""

from __future__ import annotations

import torch.nn as nn

from tallrec.baselines.base import IdModel
from tallrec.config import BaselineParams


class Model(IdModel):
    def __init__(self, cfg: BaselineParams, n_items: int, history_len: int):
        super().__init__(cfg, n_items, user_dim=cfg.hidden, history_len=history_len)
        self.drop = nn.Dropout(cfg.dropout)
        self.gru = nn.GRU(cfg.dim, cfg.hidden, cfg.layers, batch_first=True)

    def encode(self, batch):
        _, h = self.gru(self.drop(self.history(batch)))
        return h[-1]
