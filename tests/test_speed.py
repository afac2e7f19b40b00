"""Speed features that must not change results: token-budget batches (emo_hf.batching), the memory plan
(emo_hf.memory_plan), predict_proba's length sort; and `emo-hf train --max-tokens-per-batch` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emo_hf.batching import TokenBudgetBatchSampler, bucket_lengths, bucket_of
from emo_hf.memory_plan import BackboneShape, plan_memory, shape_of

# Token lengths with the shape of GoEmotions (2..51, mean ~18) plus a few at max_length.
RNG = np.random.default_rng(0)
LENGTHS = np.concatenate([RNG.integers(2, 52, size=1500), np.full(7, 128)])
BUCKETS = bucket_lengths(128)


def _epoch(sampler, epoch):
    sampler.set_epoch(epoch)
    return [list(b) for b in sampler]


def test_every_row_once_per_epoch_and_no_batch_over_the_budget():
    sampler = TokenBudgetBatchSampler(LENGTHS, 2048, BUCKETS, seed=3)
    for epoch in range(3):
        batches = _epoch(sampler, epoch)
        assert len(batches) == len(sampler)  # the count the Trainer reads up front holds in every epoch
        rows = np.concatenate(batches)
        assert sorted(rows.tolist()) == list(range(len(LENGTHS)))
        for batch in batches:
            padded = len(batch) * bucket_of(int(LENGTHS[batch].max()), BUCKETS)
            assert padded <= 2048, (len(batch), LENGTHS[batch].max())
    # Short rows fill a batch: many more rows per batch than a 128-token pad would allow.
    assert sampler.summary()["mean_rows_per_batch"] > 2 * (2048 // 128)
    assert sampler.summary()["pad_fraction"] < 0.25


def test_the_order_is_fixed_by_seed_and_epoch_and_changes_across_epochs():
    a = TokenBudgetBatchSampler(LENGTHS, 2048, BUCKETS, seed=3)
    b = TokenBudgetBatchSampler(LENGTHS, 2048, BUCKETS, seed=3)
    assert _epoch(a, 1) == _epoch(b, 1)
    assert _epoch(a, 0) != _epoch(a, 1)
    assert _epoch(a, 0) != _epoch(TokenBudgetBatchSampler(LENGTHS, 2048, BUCKETS, seed=4), 0)


def test_rank_shards_are_disjoint_cover_every_row_and_split_the_same_global_batches():
    whole = TokenBudgetBatchSampler(LENGTHS, 1024, BUCKETS, seed=5, num_replicas=3, rank=0)
    shards = [TokenBudgetBatchSampler(LENGTHS, 1024, BUCKETS, seed=5, num_replicas=3, rank=r) for r in range(3)]
    per_rank = [_epoch(s, 2) for s in shards]
    assert len({len(p) for p in per_rank}) == 1  # every rank takes the same number of steps
    rows = [set(np.concatenate(p).tolist()) for p in per_rank]
    assert not (rows[0] & rows[1]) and not (rows[0] & rows[2]) and not (rows[1] & rows[2])
    assert set.union(*rows) == set(range(len(LENGTHS)))
    whole.set_epoch(2)
    assert [b.tolist() for b in whole.global_batches()[1::3]] == per_rank[1]


def test_evaluation_order_is_sorted_longest_first_and_a_too_small_budget_is_refused():
    sampler = TokenBudgetBatchSampler(LENGTHS, 4096, BUCKETS, shuffle=False)
    widths = [bucket_of(int(LENGTHS[b].max()), BUCKETS) for b in sampler]
    assert widths == sorted(widths, reverse=True)
    with pytest.raises(ValueError, match="--max-tokens-per-batch 100 is smaller than one row of the longest bucket"):
        TokenBudgetBatchSampler(LENGTHS, 100, BUCKETS)


def test_bucket_lengths_and_the_collator_pads_to_the_bucket(tiny_mistral_dir):
    from transformers import AutoTokenizer

    from emo_hf.batching import BucketPaddingCollator

    assert bucket_lengths(128) == [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128]
    assert bucket_lengths(50)[-2:] == [48, 50] and bucket_lengths(5)[-1] == 5
    assert bucket_of(17, BUCKETS) == 24 and bucket_of(16, BUCKETS) == 16 and bucket_of(3, BUCKETS) == 8
    tokenizer = AutoTokenizer.from_pretrained(tiny_mistral_dir)
    tokenizer.padding_side = "right"
    features = [{"input_ids": list(range(4, 4 + n)), "attention_mask": [1] * n, "labels": [0, 1]} for n in (3, 20)]
    batch = BucketPaddingCollator(tokenizer, BUCKETS)(features)
    assert batch["input_ids"].shape == (2, 24) and batch["labels"].dtype.is_floating_point
    assert batch["attention_mask"].sum(1).tolist() == [3, 20]
    assert batch["input_ids"][0, :3].tolist() == [4, 5, 6] and batch["input_ids"][0, 3:].eq(tokenizer.pad_token_id).all()
    # A row without tokens becomes one attended non-pad token (unk): an all-zero mask row NaNs cuDNN attention's
    # gradients, and the pad token's zero embedding would stay zero through every layer.
    empty = BucketPaddingCollator(tokenizer, BUCKETS)([{"input_ids": [], "attention_mask": [], "labels": [0, 0]},
                                                      features[0]])
    assert empty["attention_mask"].sum(1).tolist() == [1, 3] and empty["input_ids"].shape == (2, 8)
    assert empty["input_ids"][0, 0] == tokenizer.unk_token_id != tokenizer.pad_token_id


def test_fixed_batch_shapes_give_one_shape_per_bucket_and_use_every_row_once(tiny_mistral_dir):
    """--fixed-batch-shapes: buckets too sparse to fill a batch join the next longer one, and every training batch of
    a bucket is padded to its full row count with zero-weight copies: one shape per bucket for CUDA graphs."""
    import torch
    from transformers import AutoTokenizer

    from emo_hf.batching import BucketPaddingCollator, FixedShapeCollator

    lengths = np.concatenate([LENGTHS, [100, 70, 75]])  # three rows alone in buckets 112, 80 and 80
    plain = TokenBudgetBatchSampler(lengths, 2048, BUCKETS, seed=3)
    fixed = TokenBudgetBatchSampler(lengths, 2048, BUCKETS, seed=3, merge_sparse_buckets=True)
    assert {80, 112} <= set(plain.used_buckets) and not {80, 112} & set(fixed.used_buckets)
    assert fixed.used_buckets[-1] == 128  # the longest bucket takes them
    tokenizer = AutoTokenizer.from_pretrained(tiny_mistral_dir)
    tokenizer.padding_side = "right"
    collate = FixedShapeCollator(BucketPaddingCollator(tokenizer, BUCKETS), fixed)
    features = [{"input_ids": [4 + (i % 50)] * int(n), "attention_mask": [1] * int(n), "labels": [float(i % 2), 0.0]}
                for i, n in enumerate(lengths)]
    shapes, seen = set(), []
    for epoch in range(2):
        fixed.set_epoch(epoch)
        for rows in fixed:
            batch = collate([features[i] for i in rows])
            n, width = batch["input_ids"].shape
            shapes.add((n, width))
            assert n * width <= 2048 and n == fixed.rows_per_batch(width)  # the budget holds, the batch is full
            real = int(batch["row_weight"].sum())
            assert real == len(rows) and batch["row_weight"][:real].eq(1).all()
            assert batch["attention_mask"][:real].sum(1).tolist() == [int(lengths[i]) for i in rows]
            assert torch.equal(batch["input_ids"][real:], batch["input_ids"][:1].expand(n - real, -1))
            seen += rows
    assert sorted(seen) == sorted(list(range(len(lengths))) * 2)  # every row once per epoch
    assert shapes == fixed.batch_shapes() and len(shapes) == len(fixed.used_buckets) < len(plain.batch_shapes())
    assert fixed.summary()["distinct_batch_shapes"] == len(shapes)


def test_zero_weight_filler_rows_leave_the_loss_and_gradients_of_the_real_rows(tiny_mistral_dir):
    import torch

    from emo_hf.backbones import load_for_training
    from emo_hf.batching import BucketPaddingCollator, FixedShapeCollator

    torch.manual_seed(0)
    model = load_for_training(tiny_mistral_dir, labels=["joy", "anger"], lora={"r": 4, "lora_alpha": 8}, max_length=32)
    model.dropout.p = 0.0
    tokenizer = model.tokenizer
    features = [{"input_ids": ids, "attention_mask": [1] * len(ids), "labels": label}
                for ids, label in (([4, 5, 6], [1.0, 0.0]), ([7, 8, 9, 10, 11], [0.0, 1.0]), ([12], [1.0, 1.0]))]
    sampler = TokenBudgetBatchSampler([3, 5, 1], 64, BUCKETS, merge_sparse_buckets=True)  # 8 rows of 8 tokens
    padded = FixedShapeCollator(BucketPaddingCollator(tokenizer, BUCKETS), sampler)(features)
    plain = BucketPaddingCollator(tokenizer, BUCKETS)(features)
    assert padded["input_ids"].shape == (8, 8) and plain["input_ids"].shape == (3, 8)

    def loss_and_grads(batch):
        model.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss, grads = loss_and_grads(padded)
    want_loss, want_grads = loss_and_grads(plain)
    torch.testing.assert_close(loss, want_loss)
    assert set(grads) == set(want_grads) and any("lora_A" in n for n in grads)
    for name, grad in want_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-7, msg=name)
    unweighted = {k: v for k, v in padded.items() if k != "row_weight"}
    assert not torch.allclose(loss_and_grads(unweighted)[0], want_loss)  # without the weights the copies would count


# ---- memory plan ----------------------------------------------------------------------------------------------------
def _qwen_05b():
    from transformers import Qwen2Config

    # Qwen2.5-0.5B's config values (hidden 896, 24 layers, 14/2 heads, MLP 4864, vocab 151936, tied embeddings).
    return shape_of(Qwen2Config(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                                num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True))


def _mistral_24b():
    from transformers import MistralConfig

    return shape_of(MistralConfig(hidden_size=5120, intermediate_size=32768, num_hidden_layers=40,
                                  num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=131072))


def test_shapes_count_the_known_parameter_totals_without_an_lm_head():
    # The classifier holds no LM head (never loaded, or dropped from Unsloth's CausalLM): a tied one is no memory of
    # its own, an untied one is left out of the count.
    assert abs(_qwen_05b().params / 1e9 - 0.494) < 0.01  # Qwen2.5-0.5B: 0.49B parameters, head tied
    head = 131072 * 5120
    assert abs((_mistral_24b().params + head) / 1e9 - 23.57) < 0.05  # Mistral Small 3.1 text model: 23.6B


def test_a_small_model_on_a_big_card_needs_no_4bit_or_checkpointing():
    plan = plan_memory(_qwen_05b(), free_bytes=140e9, tokens_per_batch=16384, lora_r=16)
    assert (plan.load_in_4bit, plan.gradient_checkpointing, plan.offload_checkpointing) == (False, False, False)
    assert plan.decided == ["load_in_4bit", "gradient_checkpointing", "offload_checkpointing"]


def test_the_24b_shape_on_a_24gb_card_needs_4bit_and_checkpointing():
    plan = plan_memory(_mistral_24b(), free_bytes=23.5 * 2**30, tokens_per_batch=4096, lora_r=16)
    assert plan.load_in_4bit and plan.gradient_checkpointing
    assert plan.estimate_gib["total"] <= 0.85 * 23.5
    bf16 = plan_memory(_mistral_24b(), free_bytes=23.5 * 2**30, tokens_per_batch=4096, lora_r=16, load_in_4bit=False)
    assert not bf16.load_in_4bit and "nothing allowed fits" in bf16.reason  # explicit False wins, and says so


def test_the_24b_shape_on_an_h200_drops_checkpointing_and_its_estimate_covers_the_measured_peaks():
    # Measured on the H200, 2026-12-02 (docs/benchmarks.md, "The 24B shape without gradient checkpointing"): 40
    # layers in 4-bit, 4,096-token batches, 139.29 GiB free. Peak GiB (torch.cuda.max_memory_allocated):
    measured = {("unsloth", True): 18.08, ("unsloth", False): 59.42, ("bnb", True): 16.56, ("bnb", False): 68.17}
    plan = plan_memory(_mistral_24b(), free_bytes=139.29 * 2**30, tokens_per_batch=4096, lora_r=16, load_in_4bit=True)
    assert not plan.gradient_checkpointing  # the fast setting (69% of the dense peak vs 47% checkpointed) fits
    for (engine, checkpointed), peak in measured.items():
        estimate = plan_memory(_mistral_24b(), free_bytes=None, tokens_per_batch=4096, lora_r=16, load_in_4bit=True,
                               gradient_checkpointing=checkpointed).estimate_gib["total"]
        assert peak <= estimate <= 1.3 * peak, (engine, checkpointed, estimate)  # errs high, not absurdly
    at_8k = plan_memory(_mistral_24b(), free_bytes=139.29 * 2**30, tokens_per_batch=8192, lora_r=16, load_in_4bit=True)
    assert at_8k.gradient_checkpointing  # twice the activations (~111 GiB) no longer fit 85% of the card


def test_the_checkpointed_24b_estimate_covers_the_peaks_measured_with_the_lm_head_dropped():
    # Measured on an H100, 2026-12-06 (docs/benchmarks.md, "The LM head dropped"): Unsloth, 40 layers in 4-bit,
    # gradient checkpointing, the library's token-budget batches, LM head dropped. Peak GiB at 4,096 and 8,192 tokens:
    for tokens, peak in ((4096, 18.45), (8192, 23.61)):
        estimate = plan_memory(_mistral_24b(), free_bytes=None, tokens_per_batch=tokens, lora_r=16, load_in_4bit=True,
                               gradient_checkpointing=True).estimate_gib["total"]
        assert peak <= estimate <= 1.3 * peak, (tokens, estimate)


def test_evaluation_batches_take_what_the_training_activations_took_within_the_cap():
    from emo_hf.memory_plan import EVAL_BUDGET_CAP, eval_tokens_per_batch

    qwen, mistral = _qwen_05b(), _mistral_24b()
    # Without checkpointing training keeps all 24 layers' activations: a no-grad forward could take 24x; the cap holds.
    assert eval_tokens_per_batch(qwen, tokens_per_batch=8192, gradient_checkpointing=False) == EVAL_BUDGET_CAP * 8192
    # Checkpointed, the 24B step keeps each layer's input plus one layer's set: ~2.1x; offloaded, only the one set.
    checkpointed = eval_tokens_per_batch(mistral, tokens_per_batch=4096, gradient_checkpointing=True)
    assert 2 * 4096 < checkpointed < 2.2 * 4096
    assert eval_tokens_per_batch(mistral, tokens_per_batch=4096, gradient_checkpointing=True,
                                 offload_checkpointing=True) == 4096
    # The plan carries it for the option it chose: the 24B on a 24 GB card is checkpointed, so ~2.1x there.
    plan = plan_memory(mistral, free_bytes=23.5 * 2**30, tokens_per_batch=4096, lora_r=16)
    assert plan.eval_tokens_per_batch == checkpointed


def test_explicit_settings_win_and_the_plan_is_recorded():
    plan = plan_memory(_qwen_05b(), free_bytes=140e9, tokens_per_batch=4096, load_in_4bit=True,
                       gradient_checkpointing=True)
    assert plan.load_in_4bit and plan.gradient_checkpointing and plan.decided == ["offload_checkpointing"]
    assert json.loads(json.dumps(plan.to_dict()))["estimate_gib"]["total"] > 0
    cpu = plan_memory(_mistral_24b(), free_bytes=None, tokens_per_batch=4096, on_gpu=False)
    assert (cpu.load_in_4bit, cpu.gradient_checkpointing) == (False, False)


def test_the_plan_never_offloads_where_unsloth_would_not_and_refuses_an_explicit_ask(monkeypatch):
    """Unsloth 2026.10.9 checkpoints without offloading below 512 tokens, and transformers + peft never offloads: the
    24B preset's 8,192 tokens on a 24 GB card got "offload_checkpointing=True" in its plan and record while Unsloth
    (max_length 128) checkpointed plainly, ~3 GiB more than the estimate assumed."""
    from emo_hf.backbones import training
    from emo_hf.memory_plan import offload_unavailable

    monkeypatch.setattr(training, "unsloth_available", lambda: True)
    assert offload_unavailable(unsloth=None, lora_r=16, max_length=512, on_gpu=True) is None
    short = offload_unavailable(unsloth=None, lora_r=16, max_length=128, on_gpu=True)
    assert "from max_length 512 (here 128)" in short
    assert "Unsloth" in offload_unavailable(unsloth=False, lora_r=16, max_length=1024, on_gpu=True)
    # 16-bit trains through peft unless --unsloth is given: offloading then needs it
    assert "unless --unsloth" in offload_unavailable(unsloth=None, lora_r=16, max_length=1024, on_gpu=True,
                                                     load_in_4bit=False)
    assert offload_unavailable(unsloth=True, lora_r=16, max_length=1024, on_gpu=True, load_in_4bit=False) is None
    assert "GPU-only" in offload_unavailable(unsloth=None, lora_r=16, max_length=1024, on_gpu=False)
    monkeypatch.setattr(training, "unsloth_available", lambda: False)
    assert "not installed" in offload_unavailable(unsloth=None, lora_r=16, max_length=1024, on_gpu=True)

    free = 23.5 * 2**30
    assert plan_memory(_mistral_24b(), free_bytes=free, tokens_per_batch=8192, lora_r=16).offload_checkpointing
    plan = plan_memory(_mistral_24b(), free_bytes=free, tokens_per_batch=8192, lora_r=16, no_offload_reason=short)
    assert (plan.load_in_4bit, plan.gradient_checkpointing, plan.offload_checkpointing) == (True, True, False)
    assert "offload_checkpointing" in plan.decided and "no offloading: Unsloth offloads only" in plan.reason
    assert "nothing allowed fits" in plan.reason  # plain checkpointing's estimate is over 85% of 23.5 GiB: it says so
    with pytest.raises(ValueError, match=r"offload_checkpointing=True cannot apply: Unsloth offloads only from "
                                         r"max_length 512 \(here 128\).*Drop --offload-checkpointing"):
        plan_memory(_mistral_24b(), free_bytes=free, tokens_per_batch=8192, offload_checkpointing=True,
                    no_offload_reason=short)


def test_train_refuses_offloading_where_it_cannot_happen_in_one_line(goemotions_slice_data, tmp_path, capsys):
    """Before, `--offload-checkpointing` on a CPU (or through peft, or under 512 tokens) was recorded as chosen and
    silently not done."""
    from emo_hf.cli import main

    out = tmp_path / "out"
    assert main(["train", "--data", str(goemotions_slice_data), "--preset", "tiny-random", "--out", str(out),
                 "--offload-checkpointing"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]  # (the data loader's progress bars come first)
    assert len(errors) == 1 and "Traceback" not in err, err
    assert "offloading is GPU-only" in errors[0] and "Drop --offload-checkpointing" in errors[0]
    assert not out.exists()


# ---- predict_proba's length sort ------------------------------------------------------------------------------------
def test_predict_proba_restores_the_order_of_texts_of_shuffled_lengths(tiny_mistral_dir):
    import torch

    from emo_hf.backbones import load_for_training

    torch.manual_seed(0)
    model = load_for_training(tiny_mistral_dir, labels=["joy", "anger", "sadness"], lora={"r": 4, "lora_alpha": 8},
                              max_length=32)
    words = "i love hate this that day so sad happy angry what a the is it not you me".split()
    rng = np.random.default_rng(1)
    texts = [" ".join(rng.choice(words, size=n)) for n in rng.permutation(np.arange(1, 25))]
    together = model.predict_proba(texts, batch_size=5)
    one_by_one = np.concatenate([model.predict_proba([t]) for t in texts])
    assert together.shape == (24, 3)
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    assert np.abs(together[0] - together[1:]).max() > 1e-4  # rows differ, so a wrong order would show


def test_predict_proba_by_token_budget_uses_every_row_once_within_the_budget_and_scores_as_row_batches(
        tiny_mistral_dir, monkeypatch):
    import torch

    from emo_hf.backbones import load_for_training
    from emo_hf.modeling import token_budget_batches

    torch.manual_seed(0)
    model = load_for_training(tiny_mistral_dir, labels=["joy", "anger", "sadness"], lora={"r": 4, "lora_alpha": 8},
                              max_length=32)
    words = "i love hate this that day so sad happy angry what a the is it not you me".split()
    rng = np.random.default_rng(2)
    texts = [" ".join(rng.choice(words, size=n)) for n in rng.integers(1, 40, size=60)]
    assert model.auto_tokens_per_batch() is None  # a CPU: batches of batch_size rows

    widths = []  # the padded [rows, width] of every batch the forward sees
    forward = type(model).forward
    monkeypatch.setattr(type(model), "forward", lambda self, input_ids=None, **kw: (
        widths.append(tuple(input_ids.shape)), forward(self, input_ids=input_ids, **kw))[1])
    by_budget = model.predict_proba(texts, max_tokens_per_batch=120)
    assert sum(rows for rows, _ in widths) == len(texts) and all(rows * width <= 120 for rows, width in widths)
    assert len(widths) < len(texts) / 2  # short rows share batches
    widths.clear()
    np.testing.assert_allclose(by_budget, model.predict_proba(texts, batch_size=7, max_tokens_per_batch=None),
                               atol=1e-5)
    assert {rows for rows, _ in widths} == {7, 60 % 7}

    lengths = sorted(rng.integers(1, 50, size=200), reverse=True)
    spans = token_budget_batches(lengths, 256)
    assert [i for start, end in spans for i in range(start, end)] == list(range(200))  # each row once, in order
    assert all((end - start) * lengths[start] <= 256 for start, end in spans)
    assert token_budget_batches([300, 5], 100) == [(0, 1), (1, 2)]  # a row longer than the budget goes alone
    with pytest.raises(ValueError, match="max_tokens_per_batch=0 must be positive"):
        token_budget_batches([3], 0)


# ---- end to end -----------------------------------------------------------------------------------------------------
def test_train_with_a_token_budget_end_to_end(goemotions_slice_data, tmp_path):
    from emo_hf.cli import main

    out = tmp_path / "run"
    assert main(["train", "--data", str(goemotions_slice_data), "--out", str(out), "--preset", "tiny-random",
                 "--epochs", "2", "--max-tokens-per-batch", "1024"]) == 0
    info = json.loads((out / "model" / "training_info.json").read_text())
    batching = info["batching"]
    assert batching["max_tokens_per_batch"] == 1024 and batching["buckets"] == bucket_lengths(32)
    assert batching["mean_rows_per_optimizer_step"] > 16  # more rows per step than the preset's batch_size 16
    assert sum(batching["rows_per_bucket"].values()) == info["train_rows"]
    steps = [h["step"] for h in info["log_history"] if "eval_macro_f1" in h]
    assert steps == [batching["batches_per_epoch"], 2 * batching["batches_per_epoch"]]  # every batch, both epochs
    plan = info["memory_plan"]
    assert plan["load_in_4bit"] is False and plan["gradient_checkpointing"] is False  # a CPU run
    assert info["hyperparameters"]["max_tokens_per_batch"] == 1024
    assert batching["merged_sparse_buckets"] is False
    # No checkpointing: training kept both layers' activations, so a no-grad batch may take 2x the tokens (cap 8x)
    assert batching["eval_tokens_per_batch"] == plan["eval_tokens_per_batch"] == 2 * 1024


def test_train_with_fixed_batch_shapes_end_to_end(goemotions_slice_data, tmp_path):
    from emo_hf.cli import main
    from emo_hf.presets import get_preset

    out = tmp_path / "run"
    assert main(["train", "--data", str(goemotions_slice_data), "--out", str(out), "--preset", "tiny-random",
                 "--epochs", "1", "--max-tokens-per-batch", "1024", "--fixed-batch-shapes"]) == 0
    info = json.loads((out / "model" / "training_info.json").read_text())
    batching = info["batching"]
    assert batching["merged_sparse_buckets"] is True and info["settings"]["fixed_batch_shapes"] is True
    assert batching["distinct_batch_shapes"] <= len(batching["rows_per_bucket"])
    assert np.isfinite([h["loss"] for h in info["log_history"] if "loss" in h]).all()
    with pytest.raises(ValueError, match=r"add --max-tokens-per-batch, e\.g\. --fixed-batch-shapes "
                                         r"--max-tokens-per-batch 8192"):
        get_preset("tiny-random").replace(fixed_batch_shapes=True)


def test_batches_built_by_worker_processes_train_the_same_model(goemotions_slice_data, tmp_path):
    """--dataloader-workers (2 by default on a GPU): the token-budget batches come from worker processes, the sampler
    stays in the loop's process, so the run is the one the loop would have built itself, loss for loss."""
    import torch
    from safetensors.torch import load_file

    from emo_hf.presets import get_preset
    from emo_hf.trainer import dataloader_workers, train

    base = get_preset("tiny-random").replace(epochs=1, max_tokens_per_batch=1024, reload_check_rows=0)
    assert dataloader_workers(base) == (2 if torch.cuda.is_available() else 0)
    runs = {}
    for workers in (0, 1):
        result = train(goemotions_slice_data, tmp_path / f"w{workers}", base.replace(dataloader_workers=workers),
                       show_progress=False)
        info = json.loads((result.model_dir / "training_info.json").read_text())
        assert info["dataloader_workers"] == workers
        losses = [(k, h[k]) for h in info["log_history"] for k in ("loss", "train_loss", "eval_loss") if k in h]
        weights = {**load_file(result.model_dir / "head.safetensors"),
                   **load_file(result.model_dir / "adapter" / "adapter_model.safetensors")}
        runs[workers] = (losses, weights)
    assert runs[0][0] and runs[0][0] == runs[1][0]
    for name, tensor in runs[0][1].items():
        torch.testing.assert_close(runs[1][1][name], tensor, rtol=0, atol=0, msg=name)
    with pytest.raises(ValueError, match=r"dataloader_workers=-1 must be >= 0, e\.g\. --dataloader-workers 2"):
        base.replace(dataloader_workers=-1)


def test_an_empty_row_gets_a_token_whose_gradients_stay_bounded(tiny_mistral_dir):
    """The pad token has a zero embedding (padding_idx): a row of only that stays zero through every layer and each
    RMSNorm's backward multiplies the gradient by ~1/sqrt(eps); the filler token (unk) does not."""
    import torch

    from emo_hf.backbones import load_for_training
    from emo_hf.batching import BucketPaddingCollator
    from emo_hf.modeling import fill_empty_rows, filler_token_id

    torch.manual_seed(0)
    model = load_for_training(tiny_mistral_dir, labels=["joy", "anger"], lora={"r": 4, "lora_alpha": 8}, max_length=32)
    tokenizer = model.tokenizer
    rows = [{"input_ids": [], "attention_mask": [], "labels": [1, 0]},
            {"input_ids": [4, 5, 6], "attention_mask": [1, 1, 1], "labels": [0, 1]}]

    embedding = model.get_input_embeddings()
    assert float(embedding.weight[tokenizer.pad_token_id].abs().max()) == 0.0  # padding_idx: the pad row is zero
    seen = {}

    def keep(module, inputs, output):  # the gradient reaching the empty row's input, through every layer's norms
        output.requires_grad_(True)
        output.retain_grad()
        seen["embedded"] = output

    embedding.register_forward_hook(keep)

    def max_grad(batch) -> float:
        model.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
        return float(seen["embedded"].grad[0, 0].abs().max())

    filled = BucketPaddingCollator(tokenizer, BUCKETS)([dict(r) for r in rows])
    padded = BucketPaddingCollator(tokenizer, BUCKETS)(fill_empty_rows([dict(r) for r in rows], tokenizer.pad_token_id))
    assert filler_token_id(tokenizer) == tokenizer.unk_token_id
    assert max_grad(filled) < 1e3
    assert max_grad(padded) > 1e3 * max_grad(filled)  # what a pad-token filler did
