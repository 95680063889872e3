"""Reduced-precision CPU scoring candidates for `bench_scoring.py --precision` (issue: scoring at twice the
fp32 rate with the same AUC). Benchmark code, not the pipeline's: a candidate enters `tallrec.scoring`
only if it passes the quality guard (|AUC - AUC_fp32| <= 0.003, Pearson r(p_yes, p_yes_fp32) >= 0.99 on
the full test sets) and is faster.

Every int8 path runs fbgemm's dynamic int8 linear (torch.ao.nn.quantized.dynamic.Linear; AVX2 and
AVX512 kernels) with per-output-channel weight scales, on the decoder's linear layers only (the LM head
is read for two rows in fp32 by the engine anyway). The LoRA is merged into the fp32 weights first,
so W + BA is quantized, not W alone.
- fp32-merged: the LoRA folded into the fp32 weights (W + BA) instead of running beside them as peft does:
  does dropping peft's extra q/v products save time?
- int8-tensor: fbgemm as it is, one activation scale per call (per tensor);
- int8-token: every row (token) divided by its own absmax before the call and multiplied back after,
  which gives each token the whole int8 range: per-token activation scales on the per-tensor kernel;
- int8-token-smooth: int8-token after SmoothQuant-style smoothing (Xiao et al. 2023): each input
  channel's activation range is moved into the weights by s_j = max|X_j|^a / max|W_j|^(1-a), folded
  into the RMSNorm before q/k/v and gate/up, and into up_proj's rows before down_proj.
"""

from __future__ import annotations

import torch

PATHS = ("fp32", "fp32-merged", "bf16", "int8-tensor", "int8-token", "int8-token-smooth")


def _dynamic_int8(linear: torch.nn.Linear) -> torch.nn.Module:
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    plain = torch.nn.Linear(linear.in_features, linear.out_features, bias=False)
    plain.weight = linear.weight
    return quantize_dynamic(
        torch.nn.Sequential(plain), {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8
    )[0]


class Int8Linear(torch.nn.Module):
    def __init__(self, linear: torch.nn.Linear, per_token: bool):
        super().__init__()
        self.q, self.bias, self.per_token = _dynamic_int8(linear), linear.bias, per_token

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.per_token:
            scale = x.abs().amax(-1, keepdim=True).clamp(min=1e-8)
            y = self.q(x / scale) * scale
        else:
            y = self.q(x)
        return y if self.bias is None else y + self.bias


def quantize_decoder(decoder: torch.nn.Module, per_token: bool) -> None:
    for module in list(decoder.modules()):
        for name, child in list(module.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(module, name, Int8Linear(child, per_token))


def activation_ranges(model, tokenizer, prompts: list[str], batch_size: int) -> dict[str, torch.Tensor]:
    """Per linear layer of the decoder, the absmax of each input channel over `prompts`."""
    from tallrec.scoring import Scorer, ScoringConfig

    ranges: dict[str, torch.Tensor] = {}

    def hook(name):
        def record(_, inputs):
            m = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(0)
            ranges[name] = torch.maximum(ranges[name], m) if name in ranges else m

        return record

    handles = [
        m.register_forward_pre_hook(hook(n)) for n, m in model.model.named_modules() if type(m) is torch.nn.Linear
    ]
    Scorer(model, tokenizer, ScoringConfig(batch_size=batch_size, progress=False)).score(prompts)
    for h in handles:
        h.remove()
    return ranges


def smooth(model, ranges: dict[str, torch.Tensor], alpha: float = 0.5) -> None:
    """Fold per-channel smoothing scales into a LLaMA-style decoder (RMSNorm before q/k/v and gate/up,
    up_proj's output rows before down_proj); the fp32 function is unchanged."""
    with torch.no_grad():
        for i, layer in enumerate(model.model.layers):
            attn, mlp = layer.self_attn, layer.mlp
            groups = [
                (
                    layer.input_layernorm.weight,
                    None,
                    [attn.q_proj, attn.k_proj, attn.v_proj],
                    f"layers.{i}.self_attn.q_proj",
                ),
                (
                    layer.post_attention_layernorm.weight,
                    None,
                    [mlp.gate_proj, mlp.up_proj],
                    f"layers.{i}.mlp.gate_proj",
                ),
                (None, mlp.up_proj, [mlp.down_proj], f"layers.{i}.mlp.down_proj"),
            ]
            for norm_weight, producer, consumers, key in groups:
                w_range = torch.stack([c.weight.abs().amax(0) for c in consumers]).amax(0).clamp(min=1e-5)
                s = (ranges[key].clamp(min=1e-5) ** alpha / w_range ** (1 - alpha)).clamp(min=1e-5)
                if norm_weight is not None:
                    norm_weight.div_(s)
                else:
                    producer.weight.div_(s[:, None])
                for c in consumers:
                    c.weight.mul_(s)


def build(path: str, base, adapter, calibration: list[str], batch_size: int):
    """(model, tokenizer) of one candidate, loaded as the evaluate stage loads the fp32 one."""
    from tallrec.config import ModelParams
    from tallrec.model import load_scoring_model

    model, tokenizer = load_scoring_model(
        base, adapter, ModelParams(dtype="bf16" if path == "bf16" else "fp32", device="cpu")
    )
    if adapter is not None and (path == "fp32-merged" or path.startswith("int8")):
        model = model.merge_and_unload()  # int8: quantize W + BA, not W alone
    if not path.startswith("int8"):
        return model, tokenizer
    if path == "int8-token-smooth":
        smooth(model, activation_ranges(model, tokenizer, calibration, batch_size))
    quantize_decoder(model.model, per_token=path != "int8-tensor")
    return model.eval(), tokenizer
