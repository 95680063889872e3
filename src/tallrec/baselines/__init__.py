"""Traditional sequential recommenders as few-shot baselines for TALLRec (the paper's Table 3).

One network per file (`tallrec.baselines.<name>`, its class `Model`); `base` holds the config, the data
encoding, the scoring head and the training loop; `run` drives one model over every domain x K x seed in params.yaml.
"""

from tallrec.names import BASELINES as MODELS
from tallrec.names import ID_BASELINES as ID_MODELS
from tallrec.names import TEXT_BASELINES as TEXT_MODELS

__all__ = ["ID_MODELS", "MODELS", "TEXT_MODELS"]
