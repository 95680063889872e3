"""The scoring engine: answer ids, prefix-cached scores equal the plain path, order, batching, peft."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from tallrec.config import PromptParams
from tallrec.prompts import RecTemplate, alpaca_prompt, answer_token_ids
from tallrec.scoring import Scorer, ScoringConfig, common_prefix_len, score_prompts

TITLES = ['"Toy Story (1995)"', '"Heat (1995)"', '"Alpha Beta"', '"Gamma (1999)"', '"Delta Epsilon"']


def rec_prompts(n: int, domain: str = "movie", seed: int = 0) -> list[str]:
    """Prompts of very different lengths: histories of 0 to 14 items."""
    rng = random.Random(seed)
    t = RecTemplate.from_params(domain)
    out = []
    for i in range(n):
        liked = [rng.choice(TITLES) for _ in range(rng.randint(0, 14))]
        disliked = [rng.choice(TITLES) for _ in range(rng.randint(0, 3))]
        out.append(alpaca_prompt(t.instruction, t.input(liked, disliked, rng.choice(TITLES))))
    return out


@pytest.fixture(scope="module")
def tiny(tiny_backbone):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_backbone, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_backbone)


def naive(model, tok, prompts):
    """The model's own forward, one prompt at a time, full logits: what the engine must reproduce."""
    yes, no = answer_token_ids(tok, "Yes.", "No.")
    with torch.inference_mode():
        logits = [model(**tok(p, return_tensors="pt")).logits[0, -1, [yes, no]] for p in prompts]
    return torch.softmax(torch.stack(logits).float(), -1)[:, 0].numpy()


def plain(model, tok, prompts, batch_size=4):
    return Scorer(model, tok, ScoringConfig(batch_size=batch_size, prefix_cache=False, progress=False)).score(prompts)


def test_answer_ids_are_the_first_answer_tokens(tiny):
    _, tok = tiny
    yes, no = answer_token_ids(tok, "Yes.", "No.")
    assert tok.convert_ids_to_tokens([yes, no]) == ["Yes", "No"]
    with pytest.raises(ValueError, match="same token id"):
        answer_token_ids(tok, "Yes.", "Yes!")


def test_prefix_cache_equals_plain_path(tiny):
    model, tok = tiny
    prompts = rec_prompts(11)
    lengths = [len(ids) for ids in tok(prompts)["input_ids"]]
    assert max(lengths) - min(lengths) > 80  # suffixes of very different lengths
    scorer = Scorer(model, tok, ScoringConfig(batch_size=3, progress=False))
    cached = scorer.score(prompts)
    assert len(scorer._prefix[0]) > 30  # the instruction prefix was cached, not skipped
    np.testing.assert_allclose(cached, plain(model, tok, prompts), atol=1e-4, rtol=0)
    np.testing.assert_allclose(cached, naive(model, tok, prompts), atol=1e-4, rtol=0)
    assert np.all((cached > 0) & (cached < 1))


def test_mixed_domains_equal_plain_path(tiny):
    model, tok = tiny
    prompts = rec_prompts(5, "movie") + rec_prompts(4, "book", seed=1)
    random.Random(2).shuffle(prompts)
    np.testing.assert_allclose(
        score_prompts(model, tok, prompts, batch_size=4, progress=False), plain(model, tok, prompts), atol=1e-4, rtol=0
    )


def test_input_order_and_batch_size_do_not_change_scores(tiny):
    model, tok = tiny
    prompts = rec_prompts(9, seed=3)
    one_by_one = np.array([score_prompts(model, tok, [p], batch_size=1, progress=False)[0] for p in prompts])
    batched = score_prompts(model, tok, prompts, batch_size=4, progress=False)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5, rtol=0)
    perm = np.random.default_rng(0).permutation(len(prompts))
    shuffled = score_prompts(model, tok, [prompts[i] for i in perm], batch_size=4, progress=False)
    np.testing.assert_allclose(shuffled, batched[perm], atol=1e-5, rtol=0)
    assert len(score_prompts(model, tok, [], batch_size=8, progress=False)) == 0


def test_peft_model_scores_and_keeps_training_mode(tiny_backbone):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_backbone)
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_backbone, dtype=torch.float32)
    prompts = rec_prompts(6, seed=4)
    before = score_prompts(base, tok, prompts, batch_size=8, progress=False)
    config = LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.5, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    peft = get_peft_model(base, config)
    peft.train()  # as during validation inside training: dropout must not reach the scores
    cached = score_prompts(peft, tok, prompts, batch_size=4, progress=False)
    assert peft.training
    assert np.abs(cached - before).max() > 1e-4  # the adapter is really applied
    np.testing.assert_allclose(cached, plain(peft, tok, prompts), atol=1e-4, rtol=0)
    peft.eval()
    np.testing.assert_allclose(cached, naive(peft, tok, prompts), atol=1e-4, rtol=0)
    np.testing.assert_allclose(cached, score_prompts(peft, tok, prompts, batch_size=4, progress=False), atol=0, rtol=0)


def test_bf16_scores_close_to_fp32(tiny_backbone, tiny):
    from transformers import AutoModelForCausalLM

    model, tok = tiny
    bf16 = AutoModelForCausalLM.from_pretrained(tiny_backbone, dtype=torch.bfloat16).eval()
    prompts = rec_prompts(6, seed=5)
    # bf16 keeps ~3 significant digits: p_yes moves by well under 0.02
    np.testing.assert_allclose(
        score_prompts(bf16, tok, prompts, batch_size=8, progress=False),
        score_prompts(model, tok, prompts, batch_size=8, progress=False),
        atol=2e-2,
    )


@pytest.mark.slow
def test_bf16_stays_within_the_real_backbones_measured_spread(smollm2_base, real_movie_test, tmp_path):
    """bf16 against fp32 on the real SmolLM2 with a LoRA on top (24 real movie test prompts, through
    load_scoring_model as every score is made). Measured on this setup (AVX512-BF16 EPYC, commit 2e294a9):
    mean |Δp| 0.0041, max 0.0133, while the LoRA itself moves p_yes by 0.098 on average. The bounds (mean
    0.01, max 0.04) leave room for other CPUs' bf16 kernels, and a bf16 path that loses the adapter, reads
    another position or normalises over other logits lands far outside them (the tiny random model's scores
    sit near 0.5, where a 0.02 bound could catch none of these)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tallrec.config import ModelParams
    from tallrec.model import load_scoring_model

    prompts = [alpaca_prompt(i, x) for i, x in zip(real_movie_test["instruction"][:24], real_movie_test["input"][:24])]
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(smollm2_base, dtype=torch.float32)
    lora = LoraConfig(r=8, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(tmp_path / "adapter")

    def scores(adapter, dtype):
        model, tok = load_scoring_model(smollm2_base, adapter, ModelParams(dtype=dtype, device="cpu"))
        return score_prompts(model, tok, prompts, batch_size=8, progress=False)

    fp32, bf16 = scores(tmp_path / "adapter", "fp32"), scores(tmp_path / "adapter", "bf16")
    lora_effect = np.abs(fp32 - scores(None, "fp32")).mean()
    assert lora_effect > 0.05  # a path that dropped the adapter would be 5x outside the mean bound
    assert np.abs(bf16 - fp32).mean() <= 0.01 and np.abs(bf16 - fp32).max() <= 0.04


def test_common_prefix_len():
    assert common_prefix_len([[1, 2, 3], [1, 2, 4, 5], [1, 2]]) == 2
    assert common_prefix_len([[7, 1], [8, 1]]) == 0
    assert common_prefix_len([]) == 0


@pytest.mark.slow
def test_real_smollm2_prefix_cache_equals_plain_path(smollm2_base, real_movie_test):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_base)
    model = AutoModelForCausalLM.from_pretrained(smollm2_base, dtype=torch.float32).eval()
    df = real_movie_test.head(4)
    prompts = [alpaca_prompt(i, x) for i, x in zip(df["instruction"], df["input"])]
    cached = score_prompts(model, tok, prompts, batch_size=2, progress=False)
    np.testing.assert_allclose(cached, plain(model, tok, prompts, 2), atol=1e-4, rtol=0)
    np.testing.assert_allclose(cached, naive(model, tok, prompts), atol=1e-4, rtol=0)


# ------------------------------------------------------------------ one answer lookup, one scoring path


def sentencepiece_style_tokenizer():
    """A LLaMA-style tokenizer built in-process: Metaspace pre-tokenizer (a word after a space starts
    with "▁", and the text's first word gets one too), byte-fallback-free BPE trained on prompt text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    t = RecTemplate.from_params("movie")
    corpus = [t.full_prompt([TITLES[0]], [TITLES[1]], TITLES[2]) + answer for answer in ("Yes.", "No.")] * 20
    corpus += ["Yes. No. Yes, no. Say Yes. Say No."] * 20  # the words after a space: "▁Yes", "▁No"
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    # a newline is a token of its own (SentencePiece's <0x0A>), punctuation too
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split("\n", "isolated"),
            pre_tokenizers.Punctuation(),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first"),
        ]
    )
    bpe.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    bpe.train_from_iterator(
        corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>"
    )


def test_training_labels_and_scoring_read_the_same_answer_token():
    """With a SentencePiece-style tokenizer "Yes." alone is "▁Yes" + "." but after "Response:\\n" it is
    "Yes" + ".": the label a model is trained on must be the id the scorer reads."""
    from dataclasses import replace

    from tallrec.config import Params
    from tallrec.train.batches import encode
    from tallrec.train.loop import TrainConfig

    tok = sentencepiece_style_tokenizer()
    alone = tok("Yes.", add_special_tokens=False)["input_ids"][0]
    assert tok.convert_ids_to_tokens([alone]) == ["▁Yes"]  # the trap: what the old lookup trained on
    yes, no = answer_token_ids(tok, "Yes.", "No.")
    assert tok.convert_ids_to_tokens([yes, no]) == ["Yes", "No"] and yes != alone
    prompt = rec_prompts(1)[0]
    cfg = replace(TrainConfig.of(Params().rec_tune, max_length=512, seed=0), max_length=512)
    ids, labels = encode(tok, prompt, "Yes.", cfg)
    first_label = next(t for t in labels if t != -100)
    assert first_label == yes and ids[len(tok(prompt)["input_ids"])] == yes


@pytest.mark.slow
def test_smollm2_answer_tokens(smollm2_base):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_base)
    yes, no = answer_token_ids(tok, "Yes.", "No.")
    assert tok.convert_ids_to_tokens([yes, no]) == ["Yes", "No"]


def test_the_answers_come_from_params(tiny):
    """prompt.yes / prompt.no decide which two logits are compared: swapping them gives 1 - p."""
    model, tok = tiny
    prompts = rec_prompts(5, seed=7)
    default = score_prompts(model, tok, prompts, batch_size=8, progress=False)
    swapped = score_prompts(
        model, tok, prompts, batch_size=8, prompt=PromptParams(yes="No.", no="Yes."), progress=False
    )
    np.testing.assert_allclose(swapped, 1 - default, atol=1e-6)


def scoring_project(folder, tiny_backbone, n=6):
    """A project folder with a movie test split of `n` rows (their users' histories kept as the CLI reads
    them), the tiny backbone as models/base/tiny and a random LoRA as the tallrec_movie_k8_seed0 adapter.
    Returns (users for `tallrec score`, the rows' prompts)."""
    import json

    import polars as pl
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tallrec import paths
    from tallrec.model import build_base

    rng, t = random.Random(3), RecTemplate.from_params("movie")
    users, rows = [], []
    for i in range(n):
        liked = [rng.choice(TITLES) for _ in range(rng.randint(1, 6))]
        disliked = [rng.choice(TITLES) for _ in range(rng.randint(0, 3))]
        target, label = rng.choice(TITLES), i % 2
        users.append({"liked": liked, "disliked": disliked, "target": target})
        history = [(x, 1) for x in liked] + [(x, 0) for x in disliked]
        rows.append(
            {
                "domain": "movie",
                "user": str(i),
                "target_item_id": str(100 + i),
                "label": label,
                "instruction": t.instruction,
                "input": t.input(liked, disliked, target),
                "output": t.output(label),
                "history_texts": [x for x, _ in history],
                "history_labels": [y for _, y in history],
                "target_text": target,
            }
        )
    test = folder / paths.split_path("movie", "test")
    test.parent.mkdir(parents=True)
    pl.DataFrame(rows).with_columns(pl.col("label").cast(pl.Int8)).write_parquet(test)
    build_base("tiny", str(tiny_backbone), out=folder / paths.base_model_dir("tiny"))
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_backbone, dtype=torch.float32)
    peft = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    peft.save_pretrained(folder / paths.rec_adapter_dir("tiny", "tallrec_movie_k8_seed0"))
    (folder / "users.jsonl").write_text("".join(json.dumps(u) + "\n" for u in users))
    return users, [alpaca_prompt(r["instruction"], r["input"]) for r in rows]


def evaluate_stage_and_cli(folder, backbone, dtype: str, params_text: str | None = None):
    """p_yes of the same rows from the evaluate stage's own code (stages.evaluate.main, as `dvc repro` runs
    it) and from `tallrec score` on the users' histories, in `dtype`."""
    import json

    import polars as pl
    from typer.testing import CliRunner

    from tallrec import paths
    from tallrec.cli import app
    from tallrec.config import Params, load_params, with_changes
    from tallrec.stages import evaluate

    params_file = folder / "params.yaml"
    if params_text is not None:
        params_file.write_text(params_text)
    params = with_changes(
        load_params(params_file) if params_text is not None else Params(),
        {
            "model": {"name": "tiny", "source": str(backbone), "dtype": dtype, "device": "cpu", "max_length": 512},
            "evaluate": {"test_domains": ["movie"], "test_size": None, "batch_size": 4},
        },
    )
    evaluate.main(params, "tallrec", "movie", 8, 0)
    stage = pl.read_parquet(paths.llm_predictions_path("tallrec_movie_k8_seed0", "movie"))["score"].to_numpy()
    adapter = paths.rec_adapter_dir("tiny", "tallrec_movie_k8_seed0")
    args = ["score", "--adapter", str(adapter), "--base", str(paths.base_model_dir("tiny")), "--input", "users.jsonl"]
    args += ["--dtype", dtype, "--device", "cpu", "--batch-size", "4", "--output", f"scored_{dtype}.jsonl"]
    if params_text is not None:
        args += ["--params", str(params_file)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    cli = [json.loads(line)["p_yes"] for line in (folder / f"scored_{dtype}.jsonl").read_text().splitlines()]
    return stage, np.array(cli)


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16", "auto"])
def test_the_evaluate_stage_and_cli_score_give_the_same_p_yes_in_every_dtype(
    tiny_backbone, tmp_path, monkeypatch, dtype
):
    """One loading and scoring path: the evaluate stage (its own code, writing its predictions parquet) and
    `tallrec score` on the same users agree to the CLI's 6 decimals in every dtype the CLI offers (the CLI
    used to merge the LoRA into bf16 weights, the stage did not)."""
    monkeypatch.chdir(tmp_path)
    scoring_project(tmp_path, tiny_backbone)
    stage, cli = evaluate_stage_and_cli(tmp_path, tiny_backbone, dtype)
    assert len(stage) == len(cli) == 6 and np.ptp(stage) > 1e-4  # real, different scores
    np.testing.assert_array_equal(cli, np.round(stage, 6))


def test_params_yaml_answers_reach_the_scorer(tiny_backbone, tmp_path, monkeypatch):
    """prompt.yes / prompt.no written in a params file decide which logits both the evaluate stage and
    `tallrec score` compare: swapped in the file, every p_yes becomes 1 - p_yes."""
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)
    scoring_project(tmp_path, tiny_backbone)
    import re

    text = (root / "params.yaml").read_text()
    default = evaluate_stage_and_cli(tmp_path, tiny_backbone, "fp32", text)
    swapped, n = re.subn(
        r"(?m)^  (yes|no): (Yes|No)\.", lambda m: f"  {m[1]}: {'No' if m[2] == 'Yes' else 'Yes'}.", text
    )
    assert n == 2
    stage, cli = evaluate_stage_and_cli(tmp_path, tiny_backbone, "fp32", swapped)
    np.testing.assert_allclose(stage, 1 - default[0], atol=1e-6)
    np.testing.assert_allclose(cli, 1 - default[1], atol=2e-6)
    assert np.abs(default[0] - 0.5).max() > 1e-3  # 1 - p differs from p
