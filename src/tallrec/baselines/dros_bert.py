"""DROS-BERT: the GRU-BERT network (base.GRUBertModel: item ids plus frozen text vectors) with DROS's loss."""

from tallrec.baselines.base import DrosLoss, GRUBertModel


class Model(DrosLoss, GRUBertModel):
    pass
