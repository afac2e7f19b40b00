"""`--compile`: each backbone layer compiled in place gives the same logits and LoRA gradients as eager, over batch
shapes that differ (dynamic shapes), keeps parameter names and saving unchanged, and refuses what it does not support.

The tests compile with backend="aot_eager": Dynamo's capture and AOTAutograd's forward/backward split (where
compiling a peft model breaks, if it does) without generating code, which takes ~1 min per graph on the 2-core
machine; the GPU runs use inductor (docs/benchmarks.md).
"""

import pytest
import torch

LABELS = ["joy", "anger", "fear"]
TEXTS = ["i love this", "so sad that day was awful", "what a great day !", "why would you do that ?"]


def _pair(folder):
    from emo_hf.backbones import load_for_training

    eager = load_for_training(folder, labels=LABELS, lora={"r": 2}, max_length=32)
    compiled = load_for_training(folder, labels=LABELS, lora={"r": 2}, max_length=32)
    compiled.load_state_dict(eager.state_dict())
    for model in (eager, compiled):
        model.dropout.p = 0.0
    return eager, compiled


def _logits_and_grads(model, batch, labels):
    model.zero_grad()
    out = model(**batch, labels=labels)
    out.loss.backward()
    return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_matches_eager(eager, compiled, rows, pad_to):
    """The compiled model's logits and LoRA gradients equal eager's on `rows` texts padded to `pad_to` tokens."""
    batch = eager.tokenizer(TEXTS[:rows], padding="max_length", max_length=pad_to, return_tensors="pt")
    labels = torch.tensor([[1.0, 0.0, 1.0]] * rows)
    want_logits, want_grads = _logits_and_grads(eager, batch, labels)
    got_logits, got_grads = _logits_and_grads(compiled, batch, labels)
    torch.testing.assert_close(got_logits, want_logits, rtol=1e-5, atol=1e-6)
    assert set(got_grads) == set(want_grads) and any("lora_B" in n for n in got_grads)
    for name, grad in want_grads.items():
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("scope", ["layers", "stack"])
@pytest.mark.parametrize("family", ["qwen2", "gemma3"])  # gemma3: sliding and full attention layers alternate
def test_compiled_layers_match_eager_across_batch_shapes(tiny_family_dirs, family, scope, tmp_path):
    from emo_hf.backbones.compilation import compile_layers
    from emo_hf.modeling import EmoModelForMultiLabel

    from torch._dynamo.testing import CompileCounterWithBackend

    eager, compiled = _pair(tiny_family_dirs[family])
    names = list(compiled.state_dict())
    counter = CompileCounterWithBackend("aot_eager")  # counts the graphs Dynamo hands to the backend
    assert compile_layers(compiled.backbone, scope=scope, backend=counter) == 2
    if scope == "layers":
        assert all(layer._compiled_call_impl is not None for layer in compiled.backbone.layers)
    else:  # the decoder's own forward (embeddings, masks, the layer loop), compiled as one region for training
        assert compiled.backbone.forward.compiled_forward is not None
    assert list(compiled.state_dict()) == names  # compiled in place: no _orig_mod. prefixes
    for rows, pad_to in [(4, 8), (3, 16), (2, 24)]:  # different rows and lengths: one dynamic graph, not three
        assert_matches_eager(eager, compiled, rows, pad_to)
    # All three shapes and both layers share one training graph: not a static graph and then a symbolic one, not a
    # second graph for layer 0 (whose input comes from frozen embeddings); Gemma 3's sliding and full attention
    # layers share it too (their masks and rotary tables differ, not their code). With scope "stack": one graph, no
    # graph break in the mask building.
    assert counter.frame_count == 1
    compiled.save_pretrained(tmp_path / "saved")
    reloaded = EmoModelForMultiLabel.from_pretrained(tmp_path / "saved").eval()
    compiled.eval()
    with torch.no_grad():
        batch = compiled.tokenize(TEXTS)
        torch.testing.assert_close(reloaded(**batch).logits, compiled(**batch).logits, rtol=1e-5, atol=1e-6)
        compiled(**compiled.tokenize(TEXTS[:2]))  # another shape
    # Per layer: + one evaluation graph (no grad), again shared by every layer and shape. The whole loop evaluates
    # eager (compiling its no-grad graph cost more than the evaluations it served, docs/benchmarks.md).
    assert counter.frame_count == (2 if scope == "layers" else 1)
    compiled.train()
    got_logits, _ = _logits_and_grads(compiled, batch, torch.tensor([[1.0, 0.0, 1.0]] * len(TEXTS)))
    assert counter.frame_count == (2 if scope == "layers" else 1)  # back to training: the training graph again
    torch.testing.assert_close(got_logits, reloaded(**batch).logits, rtol=1e-5, atol=1e-6)


def test_compile_refuses_gradient_checkpointing_and_unsloth(tiny_family_dirs):
    from emo_hf.backbones import load_for_training
    from emo_hf.backbones.compilation import compile_layers
    from emo_hf.presets import TrainSettings

    model = load_for_training(tiny_family_dirs["qwen2"], labels=LABELS, lora={"r": 2}, max_length=32)
    model.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    with pytest.raises(ValueError, match="compile=True with gradient checkpointing is not supported"):
        compile_layers(model.backbone, backend="aot_eager")
    with pytest.raises(ValueError, match=r"compile=True with unsloth=True.*--compile --no-unsloth"):
        TrainSettings(compile=True, unsloth=True)
    with pytest.raises(ValueError, match="compile_mode='fast' is not a torch.compile mode"):
        TrainSettings(compile=True, compile_mode="fast")
    with pytest.raises(ValueError, match="compile_mode='reduce-overhead' records CUDA graphs.*--compile-scope stack"):
        TrainSettings(compile=True, compile_mode="reduce-overhead")
    assert TrainSettings(compile=True, compile_scope="stack", compile_mode="reduce-overhead").compile_scope == "stack"
    with pytest.raises(ValueError, match="compile_scope='model' is not valid"):
        TrainSettings(compile=True, compile_scope="model")


def test_compile_is_not_applied_to_a_checkpointed_or_unsloth_backbone(tiny_family_dirs):
    from emo_hf.backbones import load_for_training
    from emo_hf.backbones.compilation import compile_skip_reason

    model = load_for_training(tiny_family_dirs["qwen2"], labels=LABELS, lora={"r": 2}, max_length=32)
    assert compile_skip_reason(model) is None
    model.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert "gradient checkpointing is on" in compile_skip_reason(model)
    model.backbone.gradient_checkpointing_disable()
    model.__dict__["_unsloth_model"] = object()  # what the Unsloth loader leaves (emo_hf.backbones.training)
    assert "loaded through Unsloth" in compile_skip_reason(model)


def test_unsloth_on_request_needs_a_gpu():
    from emo_hf.presets import get_preset
    from emo_hf.trainer import _use_unsloth

    settings = get_preset("tiny-random")
    assert _use_unsloth(settings) is None  # unset: Unsloth only where installed and 4-bit
    assert _use_unsloth(settings.replace(unsloth=False)) is False
    assert _use_unsloth(settings.replace(compile=True)) is None  # compile does not change the loading path
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="unsloth=True needs a CUDA GPU"):
            _use_unsloth(settings.replace(unsloth=True))


def test_train_with_compile_records_it_and_the_saved_model_reloads(goemotions_slice_data, tmp_path, monkeypatch):
    """The trainer's wiring: `compile=True` compiles the backbone's layers before training (here with aot_eager, see
    the module docstring), training and the reload check run through them."""
    import json

    from emo_hf.backbones import compilation
    from emo_hf.presets import get_preset
    from emo_hf.trainer import train

    calls = []
    real = compilation.compile_layers

    def compile_for_test(backbone, **kwargs):
        calls.append(kwargs)
        return real(backbone, **{**kwargs, "backend": "aot_eager"})

    monkeypatch.setattr(compilation, "compile_layers", compile_for_test)
    settings = get_preset("tiny-random").replace(epochs=1, compile=True, max_tokens_per_batch=256)
    result = train(goemotions_slice_data, tmp_path / "run", settings, show_progress=False)
    assert calls == [{"scope": "layers", "mode": None, "lean_lora": True, "precompile_dir": None}]
    info = json.loads((result.model_dir / "training_info.json").read_text())
    assert info["settings"]["compile"] is True and info["settings"]["lean_lora"] is True
    # 2 layers x the 7 projections, each with the lean LoRA forward (emo_hf.backbones.lean_lora)
    assert info["compile"] == {"layers": 2, "mode": "default", "scope": "layers", "lean_lora_projections": 14}
    assert info["reload_check"]["ok"] is True
