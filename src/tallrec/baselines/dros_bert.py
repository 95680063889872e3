"""DROS-BERT: the GRU-BERT network (item ids plus frozen text vectors) trained with DROS's loss."""

from tallrec.baselines.gru_bert import Model  # noqa: F401
