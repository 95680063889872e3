"""GRU-BERT: GRU4Rec whose items are [id embedding ; frozen sentence embedding of the item text].

The TALLRec paper encodes titles with BERT and runs a 4-layer GRU of hidden size 1024. BERT-base
cannot be downloaded here; the text vectors come from all-MiniLM-L6-v2 (tallrec.baselines.text_embed),
computed once per domain. Items never seen in training share the UNK id but keep their own text
vector, which is how this model tells unseen items apart. The network (base.GRUBertModel) lives in base
because DROS-BERT trains it too, with DROS's loss.
"""

from tallrec.baselines.base import GRUBertModel


class Model(GRUBertModel):
    pass
