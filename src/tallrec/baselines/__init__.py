"""Traditional sequential recommenders as few-shot baselines for TALLRec (the paper's Table 3).

One network per file (`tallrec.baselines.<name>`, its class `Model`, which owns its loss); `base` holds the shared
layers, the data encoding, the scoring head and the training loop; `run` drives one model over every
domain x K x seed in params.yaml. The model names live in tallrec.names (BASELINES, ID_/TEXT_BASELINES).
"""
