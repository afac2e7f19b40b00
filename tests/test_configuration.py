"""EmoConfig: labels, sub-config round trip, automatic pooling, validation errors that quote the bad value."""

from __future__ import annotations

import json

import pytest

transformers = pytest.importorskip("transformers")
from transformers import AutoConfig, BertConfig, MistralConfig  # noqa: E402

from emo_hf.configuration import FIELD_HELP, EmoConfig  # noqa: E402

TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
            head_dim=8, vocab_size=40)


def test_labels_set_id2label_label2id_and_default_thresholds():
    config = EmoConfig(labels=["joy", "anger", "fear"])
    assert config.labels == ["joy", "anger", "fear"]
    assert config.id2label == {0: "joy", 1: "anger", 2: "fear"}
    assert config.label2id == {"joy": 0, "anger": 1, "fear": 2}
    assert config.num_labels == 3
    assert config.thresholds == [0.5, 0.5, 0.5]


def test_per_label_values_from_dict_or_float():
    config = EmoConfig(labels=["joy", "anger"], thresholds={"anger": 0.3, "joy": 0.7}, focal_alpha=0.25)
    assert config.thresholds == [0.7, 0.3]
    assert config.focal_alpha == [0.25, 0.25]
    assert config.threshold_map() == {"joy": 0.7, "anger": 0.3}
    config.set_thresholds([0.1, 0.9])
    assert config.threshold_map() == {"joy": 0.1, "anger": 0.9}


def test_save_load_round_trip_keeps_backbone_sub_config(tmp_path):
    backbone = MistralConfig(**TINY, quantization_config={"load_in_4bit": True})
    config = EmoConfig(labels=["joy", "anger"], backbone_name_or_path="some/model", backbone_config=backbone,
                       input_mode="embedding", num_soft_tokens=3, focal_alpha=[0.2, 0.8], thresholds=[0.4, 0.6],
                       lora={"r": 8, "lora_alpha": 16, "target_modules": ("q_proj", "v_proj")}, load_in_4bit=True)
    assert backbone is not config.backbone_config  # a copy, not the live backbone's config
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "emo_multilabel"
    assert saved["backbone_config"]["model_type"] == "mistral"
    assert "quantization_config" not in saved["backbone_config"]  # 4-bit is recorded by load_in_4bit instead
    loaded = EmoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded.backbone_config, MistralConfig)
    assert loaded.backbone_config.hidden_size == 32
    assert loaded.labels == ["joy", "anger"]
    assert (loaded.input_mode, loaded.num_soft_tokens, loaded.pooling) == ("embedding", 3, "last")
    assert loaded.focal_alpha == [0.2, 0.8] and loaded.thresholds == [0.4, 0.6]
    assert loaded.lora == {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}
    assert loaded.load_in_4bit is True


def test_pooling_defaults_by_backbone_type():
    assert EmoConfig(backbone_config=MistralConfig(**TINY)).pooling == "last"
    bert = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64)
    assert EmoConfig(backbone_config=bert).pooling == "mean"
    assert EmoConfig(backbone_config=bert, pooling="last").pooling == "last"  # explicit wins


def test_multimodal_mistral3_keeps_the_text_config():
    mistral3 = AutoConfig.for_model("mistral3", text_config=dict(model_type="mistral", **TINY))
    config = EmoConfig(backbone_config=mistral3)
    assert config.backbone_config.model_type == "mistral"
    assert config.backbone_config.hidden_size == 32


@pytest.mark.parametrize(
    "kwargs, quoted",
    [
        (dict(input_mode="tokens"), "'tokens'"),
        (dict(pooling="max"), "'max'"),
        (dict(focal_gamma=-0.5), "-0.5"),
        (dict(focal_gamma="2"), "'2'"),
        (dict(labels=["joy", "anger"], focal_alpha=[0.1, 1.5]), "[0.1, 1.5]"),
        (dict(labels=["joy", "anger"], thresholds=[0.5]), "[0.5]"),
        (dict(labels=["joy", "anger"], thresholds={"joy": 0.5, "fear": 0.5}), "'fear'"),
        (dict(classifier_dropout=1.0), "1.0"),
        (dict(num_soft_tokens=0), "0"),
        (dict(max_length="long"), "'long'"),
        (dict(labels=["joy", "joy"]), "['joy', 'joy']"),
        (dict(labels="joy,anger"), "'joy,anger'"),
        (dict(lora={"alpha": 3}), "{'alpha': 3}"),
        (dict(load_in_4bit="yes"), "'yes'"),
        (dict(backbone_config={"hidden_size": 3}), "{'hidden_size': 3}"),
        (dict(input_mode="embedding", encoder_name=""), "''"),
    ],
)
def test_bad_values_raise_with_the_value_quoted(kwargs, quoted):
    with pytest.raises(ValueError) as error:
        EmoConfig(**kwargs)
    message = str(error.value)
    assert quoted in message
    assert "For example: EmoConfig(" in message


def test_every_field_has_help_text():
    fields = {"labels", "backbone_name_or_path", "backbone_config", "backbone_gguf_file", "input_mode", "pooling",
              "num_soft_tokens", "encoder_name", "encoder_dim", "projection_hidden_size", "focal_gamma",
              "focal_alpha", "classifier_dropout", "thresholds", "max_length", "lora", "load_in_4bit", "prompt"}
    assert set(FIELD_HELP) == fields == set(EmoConfig.help())
    assert all(len(text) > 20 for text in FIELD_HELP.values())
    for name in fields:
        assert f"{name}:" in EmoConfig.__doc__


def test_import_emo_hf_is_light_and_registers_when_transformers_loads():
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import sys, emo_hf\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'import emo_hf must stay light'\n"
        "from transformers import AutoConfig\n"
        "from transformers.models.auto.modeling_auto import MODEL_MAPPING\n"
        "config = AutoConfig.for_model('emo_multilabel', labels=['joy'])\n"
        "print(type(config).__module__, MODEL_MAPPING[type(config)].__name__)\n"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["emo_hf.configuration", "EmoModelForMultiLabel"]


FIRST_IMPORTS = ["emo_hf.modeling", "emo_hf.data.embedding", "emo_hf.configuration"]


@pytest.fixture(scope="module")
def first_import_runs():
    """One fresh interpreter per submodule imported first, all started at once (each waits ~9 s on imports)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    runs = {}
    for first in FIRST_IMPORTS:
        script = (
            f"import {first}\n"
            "from transformers import AutoConfig\n"
            "from transformers.models.auto.modeling_auto import MODEL_MAPPING\n"
            "config = AutoConfig.for_model('emo_multilabel', labels=['joy'])\n"
            "print(type(config).__module__, MODEL_MAPPING[type(config)].__name__)\n"
        )
        runs[first] = subprocess.Popen([sys.executable, "-W", "default", "-c", script], cwd=root, text=True,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    done = {first: process.communicate(timeout=300) for first, process in runs.items()}
    return {first: (runs[first].returncode, *done[first]) for first in FIRST_IMPORTS}


@pytest.mark.parametrize("first", FIRST_IMPORTS)
def test_registration_works_silently_whichever_submodule_is_imported_first(first_import_runs, first):
    """Importing a submodule first (transformers then loads inside emo_hf.configuration's import) must neither warn
    "emo_hf could not register its Auto classes" (a circular import) nor leave the Auto classes unregistered."""
    returncode, stdout, stderr = first_import_runs[first]
    assert returncode == 0, stderr[-2000:]
    assert "could not register" not in stderr, stderr[-2000:]
    assert stdout.split() == ["emo_hf.configuration", "EmoModelForMultiLabel"], stderr[-2000:]
