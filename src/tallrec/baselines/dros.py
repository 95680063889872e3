"""DROS (Yang et al., SIGIR 2023) on the GRU4Rec network, as the TALLRec authors used it.

The network is GRU4Rec's (base.GRUModel); what changes is the loss (tallrec.baselines.base.dros_loss): MSE
plus a distributionally robust term over all items, weighted by their popularity in the training rows.
"""

from tallrec.baselines.base import DrosLoss, GRUModel


class Model(DrosLoss, GRUModel):
    pass
