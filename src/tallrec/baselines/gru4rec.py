"""GRU4Rec (Hidasi et al., ICLR 2016): a GRU reads the history; its last state is the user.

The network (base.GRUModel) lives in base because DROS (tallrec.baselines.dros) trains it too.
"""

from tallrec.baselines.base import GRUModel


class Model(GRUModel):
    pass
