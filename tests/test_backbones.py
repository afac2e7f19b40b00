"""load_for_training on CPU: LoRA settings, targets per backbone type, trainable parts, no GPU packages needed."""

from __future__ import annotations

import sys

import pytest

torch = pytest.importorskip("torch")

from emo_hf.backbones import LoraSettings, count_parameters, load_for_training  # noqa: E402

LABELS = ["joy", "anger"]


def test_lora_settings_defaults_are_the_issue_ones():
    settings = LoraSettings()
    assert (settings.r, settings.lora_alpha, settings.lora_dropout, settings.bias) == (16, 32, 0.0, "none")
    assert settings.resolved("mistral")["target_modules"] == [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert settings.resolved("bert")["target_modules"] == ["query", "key", "value", "dense"]
    assert LoraSettings(target_modules=("q_proj",)).resolved("mistral")["target_modules"] == ["q_proj"]


@pytest.mark.parametrize("lora, quoted", [({"r": 0}, "r=0"), ({"lora_dropout": 1.5}, "1.5"), ({"bias": "x"}, "'x'"),
                                          ({"rank": 8}, "'rank'"), ("r16", "'r16'"),
                                          ({"target_modules": "q_proj"}, "'q_proj'")])
def test_bad_lora_settings_raise_with_the_value(lora, quoted):
    with pytest.raises(ValueError) as error:
        LoraSettings.coerce(lora)
    assert quoted in str(error.value)


def test_cpu_path_applies_peft_lora_and_prints_counts(tiny_mistral_dir, capsys):
    model = load_for_training(tiny_mistral_dir, labels=LABELS, lora={"r": 2, "lora_alpha": 4, "target_modules":
                                                                     ["q_proj", "v_proj"]}, max_length=32)
    printed = capsys.readouterr().out
    trainable, total = count_parameters(model)
    assert f"trainable parameters {trainable:,} of {total:,}" in printed and "CPU + peft LoRA" in printed
    assert model.config.lora == {"r": 2, "lora_alpha": 4, "lora_dropout": 0.0, "bias": "none",
                                 "target_modules": ["q_proj", "v_proj"]}
    lora_layers = {name.rsplit(".lora_", 1)[0] for name, _ in model.named_parameters() if ".lora_A." in name}
    assert lora_layers == {f"backbone.layers.{i}.self_attn.{p}" for i in range(2) for p in ("q_proj", "v_proj")}
    assert model.training and model.config.max_length == 32 and model.config.load_in_4bit is False
    assert model.tokenizer is not None and model.tokenizer.pad_token == "<pad>"
    assert next(model.parameters()).dtype == torch.float32
    # Neither GPU stack is needed (nor imported) on CPU.
    assert "unsloth" not in sys.modules and "bitsandbytes" not in sys.modules


def test_config_kwargs_reach_the_config(tiny_mistral_dir):
    model = load_for_training(tiny_mistral_dir, labels=LABELS, input_mode="embedding", focal_gamma=0.0,
                              focal_alpha=[0.3, 0.7], classifier_dropout=0.0, num_soft_tokens=2, encoder_dim=12,
                              projection_hidden_size=8)
    config = model.config
    assert (config.focal_gamma, config.focal_alpha, config.num_soft_tokens, config.encoder_dim) == (
        0.0, [0.3, 0.7], 2, 12)
    assert model.projection[0].in_features == 12 and model.projection[2].out_features == 2 * 32
    assert all(p.requires_grad for p in model.projection.parameters())


def test_no_lora_trains_the_whole_backbone(tiny_mistral_dir):
    model = load_for_training(tiny_mistral_dir, labels=LABELS, lora=None)
    assert model.config.lora is None and not model.has_lora
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("lora", [{"r": 2}, None])
def test_gradient_checkpointing_asked_for_on_cpu_is_applied(tiny_mistral_dir, lora):
    # The memory plan lets an explicit --gradient-checkpointing win on a CPU and records it; the LoRA path used to
    # apply it only on a GPU, so the record said on while every layer's activations were kept.
    model = load_for_training(tiny_mistral_dir, labels=LABELS, lora=lora, max_length=32, gradient_checkpointing=True)
    assert model.backbone.is_gradient_checkpointing
    calls = []
    for layer in model.backbone.layers:
        layer.register_forward_pre_hook(lambda module, args: calls.append(module))
    batch = model.tokenize(["I love it", "so sad today"])
    model(**batch, labels=torch.tensor([[1.0, 0.0], [0.0, 1.0]])).loss.backward()
    assert len(calls) == 2 * len(model.backbone.layers)  # each layer run again in the backward: recomputed
    assert not load_for_training(tiny_mistral_dir, labels=LABELS, lora=lora, max_length=32,
                                 gradient_checkpointing=False).backbone.is_gradient_checkpointing


def test_gpu_only_options_fail_clearly_on_cpu(tiny_mistral_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="load_in_4bit=True needs a CUDA GPU"):
        load_for_training(tiny_mistral_dir, labels=LABELS, load_in_4bit=True)
    with pytest.raises(ValueError, match="no CUDA GPU"):
        load_for_training(tiny_mistral_dir, labels=LABELS, device="cuda")


UNSLOTH_ORDER_CASES = [
    ("train", ["--preset", "mistral-small-24b"], True),  # 4-bit through Unsloth: imported before transformers, peft
    ("train", ["--preset", "mistral-small-24b", "--no-unsloth"], False),
    ("train", ["--preset", "qwen2.5-0.5b"], False),  # 4-bit left to the memory plan: not known before loading
    ("train", ["--preset", "qwen2.5-0.5b", "--no-compile", "--unsloth"], True),
    ("ablate", ["--preset", "mistral-small-24b"], True),
    ("ablate", ["--preset", "minilm"], False),
]


@pytest.fixture(scope="module")
def unsloth_order_runs(tmp_path_factory):
    """`emo-hf train` / `ablate` on a (pretended) GPU with a stand-in `unsloth` package that records what was imported
    before it; each run then stops at the missing dataset folder. Import order needs fresh processes, so all six
    start at once (each mostly waits on imports: ~9 s apiece, one after another they took 54 s)."""
    import os
    import subprocess

    runs = []
    for i, (command, flags, _) in enumerate(UNSLOTH_ORDER_CASES):
        tmp_path = tmp_path_factory.mktemp(f"unsloth-order-{i}")
        fake = tmp_path / "site" / "unsloth"
        fake.mkdir(parents=True)
        record = tmp_path / "imported_before_unsloth.txt"
        (fake / "__init__.py").write_text(
            "import os, sys\n"
            "open(os.environ['UNSLOTH_RECORD'], 'w').write(' '.join(m for m in ('transformers', 'peft') if m in sys.modules))\n")
        code = ("import sys, torch; torch.cuda.is_available = lambda: True; from emo_hf.cli import main; "
                f"sys.exit(main([{command!r}, {'--data' if command == 'train' else '--source'!r}, "
                f"{str(tmp_path / 'missing')!r}, '--out', {str(tmp_path / 'out')!r}, "
                f"*{flags!r}]))")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")]),
               "UNSLOTH_RECORD": str(record), "OMP_NUM_THREADS": "1"}
        process = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        runs.append((process, tmp_path, record))
    results = []
    for process, tmp_path, record in runs:
        _, stderr = process.communicate(timeout=300)
        results.append((process.returncode, stderr, tmp_path, record))
    return results


@pytest.mark.parametrize("case", range(len(UNSLOTH_ORDER_CASES)),
                         ids=[f"{c}-{' '.join(f)}" for c, f, _ in UNSLOTH_ORDER_CASES])
def test_train_imports_unsloth_before_transformers_when_it_will_use_it(unsloth_order_runs, case):
    """Unsloth patches transformers and peft when imported, so it must come first whenever the run will use it."""
    first = UNSLOTH_ORDER_CASES[case][2]
    returncode, stderr, tmp_path, record = unsloth_order_runs[case]
    assert returncode == 2 and "missing" in stderr, stderr[-2000:]  # the data folder's one-line error
    assert not (tmp_path / "out").exists()
    assert record.exists() is first, stderr[-2000:]
    if first:
        assert record.read_text() == ""  # neither transformers nor peft came before it


@pytest.mark.parametrize("tied", [False, True])
def test_drop_output_head_frees_an_untied_head_and_keeps_the_decoder(tied):
    """Unsloth returns the whole CausalLM; the classifier only reads its decoder stack, so the LM head goes (1.25 GiB
    of the 24B's bf16 weights) and the decoder's hidden states stay exactly what they were."""
    import gc
    import weakref

    from transformers import MistralConfig, MistralForCausalLM

    from emo_hf.backbones.loading import drop_output_head

    config = MistralConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, head_dim=8, vocab_size=50, tie_word_embeddings=tied,
                           rope_parameters={"rope_type": "default", "rope_theta": 1e6})
    torch.manual_seed(0)
    causal_lm = MistralForCausalLM(config).eval()
    ids = torch.tensor([[1, 5, 7, 9, 2]])
    with torch.no_grad():
        before = causal_lm.model(input_ids=ids).last_hidden_state
    head_weight = weakref.ref(causal_lm.lm_head.weight)
    embedding_weight = causal_lm.get_input_embeddings().weight

    freed = drop_output_head(causal_lm)
    gc.collect()

    assert freed == (0 if tied else 50 * 32 * 4)  # float32 rows x hidden
    assert isinstance(causal_lm.get_output_embeddings(), torch.nn.Identity)
    assert (head_weight() is None) == (not tied)  # an untied head's weight is really released
    assert causal_lm.get_input_embeddings().weight is embedding_weight
    with torch.no_grad():
        assert torch.equal(causal_lm.model(input_ids=ids).last_hidden_state, before)
    assert drop_output_head(causal_lm) == 0  # nothing left to drop
