"""The card says what the folder is: for each kind of model (full fine-tune, LoRA, 4-bit, embedding mode), saved by
emo_hf on CPU from the tiny random backbone, every file the card names is in the folder, the backbone sentence
matches backbone.safetensors / adapter/ / load_in_4bit, the balancing sentence comes from the run's settings, and the
title is not the folder's generic name. A validation report is labelled as such and kept out of the model-index."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from emo_hf.model_card import render_model_card
from emo_hf.presets import get_preset

LABELS = ["joy", "anger", "fear"]
FILE_IN_BACKTICKS = re.compile(r"`([\w./-]+\.(?:json|safetensors|py|png|md))`")
KINDS = ["full", "lora", "4bit", "embedding"]


def _settings(kind: str):
    settings = get_preset("tiny-random").replace(keep_no_emotion=1.0)
    if kind == "full":
        settings = settings.replace(lora_r=0)
        import dataclasses

        settings = dataclasses.replace(settings, lora_r=None)
    if kind == "embedding":
        settings = settings.replace(input_mode="embedding")
    return settings


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    from emo_hf.trainer import build_model

    out = {}
    for kind in KINDS:
        settings = _settings(kind)
        encoder = {"encoder_name": "sentence-transformers/all-MiniLM-L6-v2", "encoder_dim": 384}
        model = build_model(settings, LABELS, encoder if kind == "embedding" else None)
        folder = tmp_path_factory.mktemp(kind) / "model"  # the generic name the main job's card was titled after
        model.save_pretrained(folder)
        info = {"preset": settings.preset, "settings": settings.to_dict(),
                "hyperparameters": {"lora_r": settings.lora_r or "full fine-tuning", "seed": settings.seed},
                "data": {"source": "goemotions", "balancing": "1 of the no-emotion rows kept (train split only)",
                         "label_counts_before": dict(zip(LABELS, [30, 20, 10])),
                         "label_counts_after": dict(zip(LABELS, [30, 20, 10]))},
                "selection": {"checkpoint_metric": "macro_f1", "threshold_split": "validation"}}
        if kind == "4bit":  # a 4-bit run saved on a GPU: only its config differs (CPU cannot quantise)
            config = json.loads((folder / "config.json").read_text())
            config["load_in_4bit"] = True
            (folder / "config.json").write_text(json.dumps(config))
        (folder / "training_info.json").write_text(json.dumps(info))
        out[kind] = folder
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_the_card_describes_the_files_of_its_folder(folders, kind):
    folder = folders[kind]
    text = render_model_card(folder)
    config = json.loads((folder / "config.json").read_text())
    named = set(FILE_IN_BACKTICKS.findall(text)) - {"README.md"}
    assert named and all((folder / name).is_file() for name in named), sorted(n for n in named
                                                                           if not (folder / n).is_file())
    assert "\n# model\n" not in text  # the folder's generic name is no title
    has_backbone = (folder / "backbone.safetensors").is_file()
    assert has_backbone == (kind == "full")
    assert ("not copied" in text) == (not has_backbone)
    assert ("backbone.safetensors" in text) == has_backbone
    assert ("LoRA adapters (rank" in text) == (kind in ("lora", "4bit", "embedding") and bool(config.get("lora")))
    assert ("4-bit" in text) == (kind == "4bit")
    if kind == "embedding":
        assert config["encoder_name"] in text and f"{config['num_soft_tokens']} soft token" in text
    assert ("the tokenizer" in text) == (folder / "tokenizer_config.json").is_file()
    # the balancing sentence is generated from settings.keep_no_emotion = 1.0, not copied from the stored string
    if kind != "embedding":
        assert "no oversampling, all no-emotion rows kept" in text.lower() and "1 of the no-emotion" not in text


def test_a_validation_report_is_labelled_and_kept_out_of_the_model_index(folders, tmp_path):
    import shutil

    import numpy as np

    from emo_hf.evaluation import write_report

    folder = tmp_path / "model"
    shutil.copytree(folders["lora"], folder)
    rng = np.random.default_rng(0)
    y = (rng.random((40, 3)) < 0.3).astype(int)
    write_report(folder, label_names=LABELS, split="validation", y_true=y, probs=rng.random((40, 3)),
                 thresholds=[0.5] * 3, val_tuned=True)
    card = ModelCard(render_model_card(folder))
    assert not card.data.eval_results  # the model-index claims held-out results only
    assert "never saw" not in card.text and "which chose the checkpoint and tuned the thresholds" in card.text
