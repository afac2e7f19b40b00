"""EmoConfig and the offline resolution of well-known pretrained models.

This file is copied next to exported models for `trust_remote_code=True`: it must import nothing from `emo_hf`.
"""

from __future__ import annotations

from pathlib import Path

def resolve_pretrained(name_or_path: str) -> tuple[str, str | None]:
    """Where to load `name_or_path` from: `(folder_or_hub_id, gguf_file_or_None)`.

    Inside emo_hf this is emo_hf.backbones.resolve.resolve_pretrained (offline copies in PyPI packages, multi-part
    ones joined into the cache). In the trust_remote_code copy of this file emo_hf may not be installed (and this
    file may import nothing from it), so there a local folder or `.gguf` file is used as it is and anything else is
    returned unchanged for the Hub.
    """
    if __name__ == "emo_hf.configuration":
        # Imported by name: transformers refuses a remote-code file that has an import statement of a package that
        # is not installed (its check scans every `import` line, even inside functions).
        import importlib

        return importlib.import_module("emo_hf.backbones.resolve").resolve_pretrained(name_or_path)
    path = Path(name_or_path).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return str(path.parent), path.name
    return name_or_path, None


# ----------------------------------------------------------------------------------------------------------------------
# EmoConfig
# ----------------------------------------------------------------------------------------------------------------------
from typing import Any  # noqa: E402

from transformers import AutoConfig, PretrainedConfig  # noqa: E402

# Backbone model types read bidirectionally (mean pooling); every other backbone is treated as a decoder (last token).
# The same set as the encoder families of emo_hf.backbones.families (kept here for the trust_remote_code copy;
# tests/test_families.py checks that they agree).
ENCODER_MODEL_TYPES: frozenset[str] = frozenset(
    {"bert", "roberta", "xlm-roberta", "distilbert", "mpnet", "deberta", "deberta-v2", "electra", "albert",
     "camembert", "modernbert", "nomic_bert", "xlm"}
)

# Help text of every EmoConfig field (shown by `EmoConfig.help()`; also the Args section of the docstring).
FIELD_HELP: dict[str, str] = {
    "labels": "Label names in logit order (sets id2label/label2id). Default: 2 placeholder labels.",
    "backbone_name_or_path": "Hub id, local folder or .gguf file of the pretrained backbone (resolved offline with "
    "resolve_pretrained). Used by from_pretrained to fetch the base weights when they were not saved.",
    "backbone_config": "The backbone's own config (a dict or PretrainedConfig; for multimodal Mistral 3 its text "
    "config), so a saved model rebuilds without fetching the backbone's config.",
    "backbone_gguf_file": "File name of the GGUF checkpoint inside backbone_name_or_path, or None.",
    "input_mode": "'text': the backbone reads tokens. 'embedding': a sentence-encoder vector is projected into "
    "num_soft_tokens soft tokens fed as inputs_embeds.",
    "pooling": "'last' (last non-padding token; decoders) or 'mean' (masked mean; encoders). None picks by backbone.",
    "num_soft_tokens": "Embedding mode: how many soft tokens the projection produces (>= 1).",
    "encoder_name": "Embedding mode: sentence-transformers model that embeds texts (must match the data's vectors).",
    "encoder_dim": "Embedding mode: dimension of the sentence-encoder vectors (384 for all-MiniLM-L6-v2).",
    "projection_hidden_size": "Embedding mode: hidden width of the projection MLP encoder_dim -> hidden -> "
    "num_soft_tokens * backbone hidden size.",
    "focal_gamma": "Focal loss focusing parameter gamma >= 0 (0 with focal_alpha=None is plain BCE-with-logits).",
    "focal_alpha": "Focal loss positive-class weight per label (list of num_labels values in [0, 1]; a single "
    "float is used for every label), or None for no weighting.",
    "classifier_dropout": "Dropout before the `score` head, in [0, 1).",
    "thresholds": "Decision threshold per label (list of num_labels values in [0, 1], or {label: value}); "
    "default 0.5. Tuned on validation data after training.",
    "max_length": "Maximum number of tokens per text; longer texts are truncated (with one warning).",
    "lora": "The LoRA settings used in training (r, lora_alpha, lora_dropout, bias, target_modules), or None.",
    "load_in_4bit": "Whether the backbone was trained 4-bit (NF4); from_pretrained reloads it 4-bit on a GPU.",
    "prompt": "'plain': the backbone reads the text as it is. 'instruction': the text wrapped in the tokenizer's chat "
    "template as a user turn asking 'Which emotions does this text express?' (training and predict alike). "
    "max_length counts the whole wrapped input: Qwen2.5's and SmolLM2's templates add 36 and 38 tokens.",
}

# The question of the 'instruction' prompt (EmoModelForMultiLabel.format_texts).
PROMPT_QUESTION = "Which emotions does this text express?"

_LORA_KEYS = ("r", "lora_alpha", "lora_dropout", "bias", "target_modules")


def _fail(field: str, value: Any, requirement: str, example: str) -> ValueError:
    return ValueError(f"EmoConfig: {field}={value!r} is invalid: {requirement}. For example: EmoConfig({example}).")


class EmoConfig(PretrainedConfig):
    r"""Configuration of an `EmoModelForMultiLabel`: the labels, the backbone and the classification settings.

        >>> from emo_hf.configuration import EmoConfig
        >>> config = EmoConfig(labels=["joy", "anger"], focal_gamma=2.0, thresholds=[0.4, 0.5])
        >>> config.labels, config.threshold_map()
        (['joy', 'anger'], {'joy': 0.4, 'anger': 0.5})

    Args:
        labels: Label names in logit order (sets `id2label` / `label2id`). Default: 2 placeholder labels.
        backbone_name_or_path: Hub id, local folder or `.gguf` file of the pretrained backbone.
        backbone_config: The backbone's config (dict or `PretrainedConfig`; the text config of a multimodal
            Mistral 3), so a saved model rebuilds without fetching it.
        backbone_gguf_file: GGUF file name inside `backbone_name_or_path`, or None.
        input_mode: `"text"` (tokens) or `"embedding"` (sentence vector -> soft tokens as `inputs_embeds`).
        pooling: `"last"` (decoders), `"mean"` (encoders) or None to pick from the backbone type.
        num_soft_tokens: Embedding mode: number of soft tokens (>= 1).
        encoder_name: Embedding mode: sentence-transformers model used to embed texts in `predict`.
        encoder_dim: Embedding mode: dimension of the sentence vectors.
        projection_hidden_size: Embedding mode: hidden width of the projection MLP.
        focal_gamma: Focal-loss gamma (>= 0); 0 with `focal_alpha=None` is plain BCE-with-logits.
        focal_alpha: Per-label positive weight in [0, 1] (list, or one float for all labels), or None.
        classifier_dropout: Dropout before the `score` head, in [0, 1).
        thresholds: Per-label decision thresholds in [0, 1] (list or {label: value}); default 0.5 each.
        max_length: Maximum tokens per text; longer texts are truncated with one warning.
        lora: LoRA settings used in training (`r`, `lora_alpha`, `lora_dropout`, `bias`, `target_modules`) or None.
        load_in_4bit: The backbone was trained in 4-bit; `from_pretrained` reloads it in 4-bit on a GPU.
        prompt: `"plain"` (the text as it is) or `"instruction"` (chat template + "Which emotions does this text
            express?"), applied by `format_texts` in training and prediction alike.
    """

    model_type = "emo_multilabel"
    sub_configs = {"backbone_config": AutoConfig}

    backbone_name_or_path: str | None = None
    backbone_config: Any = None
    backbone_gguf_file: str | None = None
    input_mode: str = "text"
    pooling: str | None = None
    num_soft_tokens: int = 4
    encoder_name: str | None = "sentence-transformers/all-MiniLM-L6-v2"
    encoder_dim: int = 384
    projection_hidden_size: int = 1024
    focal_gamma: float = 2.0
    focal_alpha: Any = None
    classifier_dropout: float = 0.1
    thresholds: Any = None
    max_length: int = 256
    lora: Any = None
    load_in_4bit: bool = False
    prompt: str = "plain"

    def __post_init__(self, **kwargs):
        labels = kwargs.pop("labels", None)
        if labels is not None:
            if isinstance(labels, str) or not all(isinstance(name, str) and name for name in labels):
                raise _fail("labels", labels, "give a list of non-empty label names", "labels=['joy', 'anger']")
            labels = list(labels)
            if len(set(labels)) != len(labels) or not labels:
                raise _fail("labels", labels, "label names must be unique and at least one", "labels=['joy', 'anger']")
            self.id2label = dict(enumerate(labels))
            self.label2id = {name: i for i, name in enumerate(labels)}
        if isinstance(self.backbone_config, PretrainedConfig):
            # A copy, without the live model's quantization settings (the classifier records load_in_4bit itself),
            # and for multimodal Mistral 3 only the text model's config (the classifier reads text).
            self.backbone_config = self.backbone_config.get_text_config().to_dict()
        if isinstance(self.backbone_config, dict):
            config_dict = dict(self.backbone_config)
            config_dict.pop("quantization_config", None)
            config_dict.pop("transformers_version", None)
            if "model_type" not in config_dict:
                raise _fail("backbone_config", config_dict, "a backbone config dict needs its 'model_type'",
                            "backbone_config=AutoConfig.from_pretrained('HuggingFaceTB/SmolLM2-135M-Instruct')")
            self.backbone_config = AutoConfig.for_model(**config_dict)
        super().__post_init__(**kwargs)
        if self.problem_type is None:
            # Independent sigmoids, one per label: transformers' text-classification pipeline reads this to apply a
            # sigmoid (not a softmax) to the logits, so its scores equal predict_proba.
            self.problem_type = "multi_label_classification"
        if self.label2id is None or set(self.label2id) != set(self.id2label.values()):
            self.label2id = {name: i for i, name in self.id2label.items()}
        self._validate()

    # -- validation ----------------------------------------------------------------------------------------------------
    def _validate(self) -> None:
        n = self.num_labels
        if self.backbone_config is not None and not isinstance(self.backbone_config, PretrainedConfig):
            raise _fail("backbone_config", self.backbone_config, "give a dict or a PretrainedConfig",
                        "backbone_config=AutoConfig.from_pretrained('HuggingFaceTB/SmolLM2-135M-Instruct')")
        if self.backbone_config is not None and self.backbone_config.model_type == "mistral3":
            self.backbone_config = self.backbone_config.get_text_config()
        if self.backbone_name_or_path is not None and not isinstance(self.backbone_name_or_path, str):
            raise _fail("backbone_name_or_path", self.backbone_name_or_path, "give a Hub id or a local path (str)",
                        "backbone_name_or_path='HuggingFaceTB/SmolLM2-135M-Instruct'")
        if self.input_mode not in ("text", "embedding"):
            raise _fail("input_mode", self.input_mode, "use 'text' or 'embedding'", "input_mode='text'")
        if self.pooling is None and self.backbone_config is not None:
            self.pooling = "mean" if self.backbone_config.model_type in ENCODER_MODEL_TYPES else "last"
        if self.pooling not in (None, "last", "mean"):
            raise _fail("pooling", self.pooling, "use 'last' (decoders), 'mean' (encoders) or None (automatic)",
                        "pooling='last'")
        for field, minimum in (("num_soft_tokens", 1), ("encoder_dim", 1), ("projection_hidden_size", 1),
                               ("max_length", 2)):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise _fail(field, value, f"give an integer >= {minimum}", f"{field}={max(minimum, 4)}")
        if self.input_mode == "embedding" and not (isinstance(self.encoder_name, str) and self.encoder_name):
            raise _fail("encoder_name", self.encoder_name, "embedding mode needs the sentence encoder's id or path",
                        "input_mode='embedding', encoder_name='sentence-transformers/all-MiniLM-L6-v2'")
        if isinstance(self.focal_gamma, bool) or not isinstance(self.focal_gamma, (int, float)) or self.focal_gamma < 0:
            raise _fail("focal_gamma", self.focal_gamma, "give a number >= 0", "focal_gamma=2.0")
        self.focal_gamma = float(self.focal_gamma)
        if self.focal_alpha is not None:
            self.focal_alpha = self._per_label("focal_alpha", self.focal_alpha, "focal_alpha=0.25")
        if (isinstance(self.classifier_dropout, bool) or not isinstance(self.classifier_dropout, (int, float))
                or not 0 <= self.classifier_dropout < 1):
            raise _fail("classifier_dropout", self.classifier_dropout, "give a number in [0, 1)", "classifier_dropout=0.1")
        self.thresholds = [0.5] * n if self.thresholds is None else self._per_label(
            "thresholds", self.thresholds, "thresholds=[0.5] * num_labels")
        if self.lora is not None:
            if not isinstance(self.lora, dict) or "r" not in self.lora:
                raise _fail("lora", self.lora, f"give a dict with keys {_LORA_KEYS} or None",
                            "lora={'r': 16, 'lora_alpha': 32, 'lora_dropout': 0.0, 'bias': 'none', "
                            "'target_modules': ['q_proj', 'v_proj']}")
            self.lora = dict(self.lora)
            if isinstance(self.lora.get("target_modules"), tuple):
                self.lora["target_modules"] = list(self.lora["target_modules"])
        if self.prompt not in ("plain", "instruction"):
            raise _fail("prompt", self.prompt, "use 'plain' or 'instruction'", "prompt='instruction'")
        if not isinstance(self.load_in_4bit, bool):
            raise _fail("load_in_4bit", self.load_in_4bit, "give True or False", "load_in_4bit=True")

    def _per_label(self, field: str, value: Any, example: str) -> list[float]:
        """A list of num_labels floats in [0, 1] from a float, a list or a {label: value} dict."""
        labels = self.labels
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(labels))
            missing = [name for name in labels if name not in value]
            if unknown or missing:
                raise _fail(field, value, f"dict keys must be exactly the labels {labels} (unknown: {unknown}, "
                            f"missing: {missing})", example)
            value = [value[name] for name in labels]
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value] * len(labels)
        if not isinstance(value, (list, tuple)) or len(value) != len(labels):
            raise _fail(field, value, f"give {len(labels)} values (one per label {labels})", example)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in value):
            raise _fail(field, value, "every value must be a number in [0, 1]", example)
        return [float(v) for v in value]

    # -- convenience ---------------------------------------------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        """Label names in logit order."""
        return [self.id2label[i] for i in range(len(self.id2label))]

    @property
    def is_encoder_backbone(self) -> bool:
        return self.backbone_config is not None and self.backbone_config.model_type in ENCODER_MODEL_TYPES

    def threshold_map(self) -> dict[str, float]:
        """`{label: threshold}` in label order (the content of thresholds.json)."""
        return dict(zip(self.labels, self.thresholds))

    def set_thresholds(self, thresholds: Any) -> None:
        """Replace the thresholds (list in label order, {label: value} or one float), validated."""
        self.thresholds = self._per_label("thresholds", thresholds, "thresholds=[0.5] * num_labels")

    @classmethod
    def help(cls) -> dict[str, str]:
        """Help text of every field: `{field: text}`."""
        return dict(FIELD_HELP)


if __name__ == "emo_hf.configuration":
    # Inside the emo_hf package (not in a trust_remote_code copy of this file): register with AutoConfig, and load
    # the model class so that it registers with AutoModel too (it adds ~0.2 s to the transformers import above).
    import importlib as _importlib

    AutoConfig.register(EmoConfig.model_type, EmoConfig, exist_ok=True)
    _importlib.import_module("emo_hf.modeling")
