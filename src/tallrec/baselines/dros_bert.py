"""DROS-BERT: the GRU-BERT network (item ids plus frozen text vectors) trained with DROS's loss."""

from __future__ import annotations

from tallrec.baselines import gru_bert
from tallrec.baselines.base import dros_loss


class Model(gru_bert.Model):
    def loss(self, batch):
        return dros_loss(self, batch, self.cfg, self.popularity)
