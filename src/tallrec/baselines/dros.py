"""DROS (Yang et al., SIGIR 2023) on the GRU4Rec network, as the TALLRec authors used it.

The network is GRU4Rec's; what changes is the loss (tallrec.baselines.base.dros_loss): MSE plus a
distributionally robust term over all items, weighted by their popularity in the training rows.
"""

from __future__ import annotations

from tallrec.baselines import gru4rec
from tallrec.baselines.base import dros_loss


class Model(gru4rec.Model):
    def loss(self, batch):
        return dros_loss(self, batch, self.cfg, self.popularity)
