"""Traditional sequential recommenders as few-shot baselines for TALLRec (the paper's Table 3).

One network per file; `base` holds the config, the data encoding, the scoring head and the training
loop; `run` drives one model over every domain x K x seed in params.yaml.
"""

MODELS = ("gru4rec", "caser", "sasrec", "dros", "gru_bert", "dros_bert")
TEXT_MODELS = ("gru_bert", "dros_bert")  # the ones that read item-text vectors (the text_embed stage)
