"""Traditional sequential recommenders as few-shot baselines for TALLRec (the paper's Table 3).

One network per file (`tallrec.baselines.<name>`, its class `Model`); `base` holds the config, the data
encoding, the scoring head and the training loop; `run` drives one model over every domain x K x seed in params.yaml.
"""

ID_MODELS = ("gru4rec", "caser", "sasrec", "dros")  # params baselines.models
TEXT_MODELS = (
    "gru_bert",
    "dros_bert",
)  # params baselines.text_models: they read item-text vectors (the text_embed stage)
MODELS = ID_MODELS + TEXT_MODELS
