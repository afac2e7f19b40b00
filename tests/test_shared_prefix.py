"""The instruction prompt's template tokens, run once per batch (`shared_prefix_length`, one packed backbone call):
the same logits and LoRA gradients as whole rows, eager and compiled as one region (one graph); the collator marks
only batches where every row has the prefix; the trainer records what it did."""

import pytest
import torch

LABELS = ["joy", "anger", "fear"]
TEXTS = ["i love this", "so sad that day was awful , why would you do that", "what a great day !", "why ?", "ok"]
TEMPLATE = ("{{ bos_token }}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% for m in messages %}"
            "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n")


def _instruction_model(folder, family="qwen2"):
    from emo_hf.backbones import load_for_training

    model = load_for_training(folder, labels=LABELS, lora={"r": 2}, max_length=64, prompt="instruction")
    model.tokenizer.chat_template = TEMPLATE
    model.dropout.p = 0.0
    return model


def _collate(model, prefix, texts=TEXTS, wrap=None):
    """The trainer's collator over `texts`; `wrap(collator)` (e.g. FixedShapeCollator) around it if given."""
    from emo_hf.batching import BucketPaddingCollator, bucket_lengths

    encoded = model.tokenizer(model.format_texts(texts), truncation=True, max_length=64)
    features = [{"input_ids": ids, "attention_mask": mask, "labels": [1.0, 0.0, float(i % 2)]}
                for i, (ids, mask) in enumerate(zip(encoded["input_ids"], encoded["attention_mask"]))]
    collator = BucketPaddingCollator(model.tokenizer, bucket_lengths(64), prefix)
    return (wrap(collator) if wrap else collator)(features)


def _logits_and_grads(model, batch):
    model.zero_grad()
    out = model(**batch)
    out.loss.backward()
    return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same(got, want):
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-6)
    assert set(got[1]) == set(want[1]) and any("lora_A" in n for n in want[1])
    for name, grad in want[1].items():
        torch.testing.assert_close(got[1][name], grad, rtol=1e-4, atol=1e-7, msg=name)


@pytest.mark.parametrize("family", ["qwen2", "llama", "mistral"])
def test_shared_prefix_gives_the_whole_rows_logits_and_gradients(tiny_family_dirs, family):
    from emo_hf.shared_prefix import plan_shared_prefix

    model = _instruction_model(tiny_family_dirs[family])
    prefix, info = plan_shared_prefix(model)
    system_and_question = model.tokenizer(model.format_texts(["x"])[0].split("x")[0])["input_ids"]
    assert info == {"tokens": len(prefix)} and len(prefix) >= len(system_and_question) - 1 > 10
    batch = _collate(model, prefix)
    assert batch["shared_prefix_length"] == len(prefix)
    whole = {k: v for k, v in batch.items() if k != "shared_prefix_length"}
    attention = model.backbone.config._attn_implementation
    _assert_same(_logits_and_grads(model, batch), _logits_and_grads(model, whole))
    assert model.backbone.config._attn_implementation == attention  # the packed attention is set for its call only


def test_shared_prefix_under_the_compiled_layer_loop(tiny_family_dirs):
    from emo_hf.backbones.compilation import compile_layers
    from emo_hf.shared_prefix import plan_shared_prefix

    from torch._dynamo.testing import CompileCounterWithBackend

    eager = _instruction_model(tiny_family_dirs["qwen2"])
    compiled = _instruction_model(tiny_family_dirs["qwen2"])
    compiled.load_state_dict(eager.state_dict())
    counter = CompileCounterWithBackend("aot_eager")
    compile_layers(compiled.backbone, scope="stack", backend=counter)
    prefix, _ = plan_shared_prefix(compiled)
    for texts in (TEXTS, TEXTS[:3]):  # two batch shapes, one graph: the packed batch is one call of the layer loop
        batch = _collate(eager, prefix, texts)
        assert batch["shared_prefix_length"] == len(prefix)
        _assert_same(_logits_and_grads(compiled, batch), _logits_and_grads(eager, batch))
    assert counter.frame_count == 1


def test_a_batch_is_marked_only_when_every_row_has_the_prefix_and_more():
    from emo_hf.shared_prefix import mark_shared_prefix

    def batch(rows, mask=None):
        ids = torch.tensor(rows)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids) if mask is None else torch.tensor(mask)}

    assert mark_shared_prefix(batch([[5, 6, 7, 0], [5, 6, 8, 9]], [[1, 1, 1, 0], [1, 1, 1, 1]]),
                              [5, 6])["shared_prefix_length"] == 2
    assert "shared_prefix_length" not in mark_shared_prefix(batch([[5, 6, 7], [5, 9, 8]]), [5, 6])  # a row differs
    # a row that is only the prefix (nothing left to pool), and a left-padded row
    assert "shared_prefix_length" not in mark_shared_prefix(batch([[5, 6, 0], [5, 6, 8]], [[1, 1, 0], [1, 1, 1]]),
                                                            [5, 6])
    assert "shared_prefix_length" not in mark_shared_prefix(batch([[5, 6, 7], [5, 6, 8]], [[0, 1, 1], [1, 1, 1]]),
                                                            [5, 6])
    assert "shared_prefix_length" not in mark_shared_prefix(batch([[5, 6, 7]]), [])


def test_shared_prefix_is_skipped_where_it_is_not_exact(tiny_family_dirs):
    from emo_hf.shared_prefix import plan_shared_prefix

    model = _instruction_model(tiny_family_dirs["qwen2"])
    assert plan_shared_prefix(model, enabled=False) == ([], {"skipped": "not asked for (--shared-prefix turns it on)"})
    assert "gradient checkpointing" in plan_shared_prefix(model, gradient_checkpointing=True)[1]["skipped"]
    model.config.prompt = "plain"
    assert plan_shared_prefix(model)[1]["skipped"].startswith("prompt='plain'")
    gemma = _instruction_model(tiny_family_dirs["gemma3"])  # sliding and full attention layers alternate
    assert "sliding_attention" in plan_shared_prefix(gemma)[1]["skipped"]


def test_fixed_batch_shapes_keep_the_shared_prefix_and_the_unpadded_batchs_gradients(tiny_family_dirs):
    """The qwen2.5-0.5b preset has --fixed-batch-shapes, so --shared-prefix on it pads the marked batch with filler
    rows (copies of its first row, weight 0): the batch stays marked, and the real rows' logits and the LoRA gradients
    are the unpadded batch's."""
    from emo_hf.batching import FixedShapeCollator, TokenBudgetBatchSampler, bucket_lengths
    from emo_hf.shared_prefix import plan_shared_prefix

    model = _instruction_model(tiny_family_dirs["qwen2"])
    prefix, _ = plan_shared_prefix(model)
    plain = _collate(model, prefix)
    rows, length = plain["input_ids"].shape
    sampler = TokenBudgetBatchSampler([length] * 40, 3 * rows * length, bucket_lengths(64), merge_sparse_buckets=True)
    fixed = _collate(model, prefix, wrap=lambda collator: FixedShapeCollator(collator, sampler))
    assert fixed["input_ids"].shape == (3 * rows, length) and fixed["row_weight"].sum() == rows
    assert fixed["shared_prefix_length"] == plain["shared_prefix_length"] == len(prefix)
    want, got = _logits_and_grads(model, plain), _logits_and_grads(model, fixed)
    _assert_same((got[0][:rows], got[1]), want)
