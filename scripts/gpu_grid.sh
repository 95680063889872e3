#!/usr/bin/env bash
# The GPU grid of the README: rec-tune a backbone for every train domain x K x seed and test each
# configuration on both domains, on a CUDA machine, with or without DVC (scripts/run_stages.py).
#
#   scripts/gpu_grid.sh [extra -S overrides...]
#
# Needs models/base/<model.name>/ (run `scripts/run_stages.py --stages base-model --gguf FILE -S model.name=...`
# first where the weight packages are not installed) and data/processed/ from `dvc repro sample`.
# MODEL, DOMAINS, KS and SEEDS come from the environment; later -S arguments win.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-qwen2.5-coder-0.5b}
exec python scripts/run_stages.py --stages alpaca-tune rec-tune evaluate \
  -S model.name="$MODEL" \
  -S alpaca_tune.max_samples=5000 -S alpaca_tune.batch_size=64 -S alpaca_tune.micro_batch=16 \
  -S rec_tune.train_domains="${DOMAINS:-[movie,book]}" -S rec_tune.ks="${KS:-[16,64,256]}" -S rec_tune.seeds="${SEEDS:-[0]}" \
  -S rec_tune.lr=3.0e-4 -S rec_tune.batch_size=16 -S rec_tune.micro_batch=16 -S rec_tune.max_epochs=30 \
  -S rec_tune.patience=5 -S rec_tune.valid_size=256 -S rec_tune.eval_batch_size=64 \
  -S evaluate.batch_size=64 \
  "$@"
