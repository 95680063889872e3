"""LoRA tuning, in two stages: alpaca_tune (instruction following) and rec_tune (K-shot samples).

One flat training loop in plain PyTorch (`loop.train`) serves both stages. It is:
- conditional: the loss covers the answer tokens only (optionally the prompt too, as the original);
- deterministic: every shuffle draws from a seeded torch.Generator, and dropout from the seeded
  global RNG, both of which are saved with the checkpoint;
- resumable: after each epoch (and every `checkpoint_steps` optimizer steps) the LoRA weights,
  optimizer and RNG states (safetensors) and progress (JSON) go to a checkpoint folder; a restarted run
  continues from there and ends with the same weights as an uninterrupted one;
- early-stopped on validation AUC when validation prompts are given: the best epoch's adapter is kept.
The finished output (adapter + train_state.json) lands in one rename, so a folder is finished or absent.

Modules: `batches` (examples -> token ids -> padded tensors), `checkpoint` (state, resume, fingerprint),
`curves` (the per-epoch curve files), `loop` (the loop and its output). The stage modules
(tallrec.stages.alpaca_tune, rec_tune) put the pieces together; DVC decides what runs.
"""
