"""GRU4Rec (Hidasi et al., ICLR 2016): a GRU reads the history; its last state is the user."""

from tallrec.baselines.base import GRUModel as Model  # noqa: F401  (the network DROS shares lives in base)
