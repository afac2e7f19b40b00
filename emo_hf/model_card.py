"""The model card (README.md) of a trained emo_hf model, generated from the files saved next to it.

    from emo_hf.model_card import render_model_card, write_model_card
    text = render_model_card("runs/default/model")                          # -> str
    path = write_model_card("runs/export", repo_id="my-org/emo-minilm")     # -> runs/export/README.md

Read from the model folder, each only when present: `config.json` (labels, thresholds, backbone, LoRA), `thresholds.json`
(wins over the thresholds in config.json), `report.json` (written by evaluation) and `training_info.json` (written by
training; keys listed in TRAINING_INFO_KEYS). The template is `model_card_template.md` at the top of the repository,
shipped inside the wheel as `emo_hf/model_card_template.md`. The YAML metadata goes through huggingface_hub's
`ModelCardData` / `EvalResult` (the `model-index` with subset accuracy, micro-F1 and macro-F1 on the evaluated split).
A section whose data is unknown is left out; nothing is filled with placeholder text.
"""

from __future__ import annotations

import json
import logging
import math
import os
from importlib import resources
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

TEMPLATE_NAME = "model_card_template.md"
GOEMOTIONS_HUB_ID = "google-research-datasets/go_emotions"
# Labels with fewer test examples than this get a limitation note: their F1 moves a lot with a handful of examples.
SMALL_SUPPORT = 50

# What the card reads from training_info.json (all optional; absent keys leave their part of the card out).
TRAINING_INFO_KEYS = {
    "base_model": "Hub id of the backbone (str); else config.json's backbone_name_or_path when it is a Hub id",
    "preset": "name of the training preset (str)",
    "license": "license of the model (str, default 'apache-2.0')",
    "language": "language code(s) of the data (str or list, default 'en')",
    "hyperparameters": "{name: value} of the training settings (learning_rate, num_train_epochs, batch size, ...)",
    "data.source": "'goemotions' for GoEmotions (adds its citation and the Reddit limitation) or a short name",
    "data.dataset_id": "Hub id of the training dataset (str; GoEmotions -> google-research-datasets/go_emotions)",
    "data.description": "one or two sentences on the data (str)",
    "data.splits": "{split name: number of examples}",
    "data.label_counts_before": "{label: training examples with that label before balancing}",
    "data.label_counts_after": "{label: training examples with that label after balancing}",
    "data.balancing": "how the training split was balanced (str)",
    "data.chart": "file name of the balancing chart inside the model folder (str, e.g. 'label_balance.png')",
    "selection.checkpoint_metric": "metric used to pick the checkpoint on the validation split (str, e.g. 'macro_f1')",
    "selection.threshold_split": "split the thresholds were tuned on (str, e.g. 'validation')",
    "selection.threshold_objective": "what the threshold search maximised (str, e.g. 'F1 per label')",
}

GOEMOTIONS_BIBTEX = """@inproceedings{demszky2020goemotions,
  author    = {Demszky, Dorottya and Movshovitz-Attias, Dana and Ko, Jeongwoo and Cowen, Alan and Nemade, Gaurav and Ravi, Sujith},
  title     = {GoEmotions: A Dataset of Fine-Grained Emotions},
  booktitle = {Proceedings of the 58th Annual Meeting of the Association for Computational Linguistics (ACL)},
  year      = {2020},
  url       = {https://arxiv.org/abs/2005.00547}
}"""

# BibTeX of the base models this project ships presets for; other base models get a link to their own card.
BASE_MODEL_BIBTEX = {
    "sentence-transformers/all-MiniLM-L6-v2": """@inproceedings{reimers-2019-sentence-bert,
  title     = {Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks},
  author    = {Reimers, Nils and Gurevych, Iryna},
  booktitle = {Proceedings of the 2019 Conference on Empirical Methods in Natural Language Processing},
  year      = {2019},
  publisher = {Association for Computational Linguistics},
  url       = {https://arxiv.org/abs/1908.10084}
}""",
    "HuggingFaceTB/SmolLM2-135M-Instruct": """@misc{allal2025smollm2,
  title         = {SmolLM2: When Smol Goes Big -- Data-Centric Training of a Small Language Model},
  author        = {Loubna Ben Allal and Anton Lozhkov and Elie Bakouch and Gabriel Martín Blázquez and Guilherme Penedo and Lewis Tunstall and Andrés Marafioti and Hynek Kydlíček and Agustín Piqueres Lajarín and Vaibhav Srivastav and Joshua Lochner and Caleb Fahlgren and Xuan-Son Nguyen and Clémentine Fourrier and Ben Burtenshaw and Hugo Larcher and Haojun Zhao and Cyril Zakka and Mathieu Morlon and Colin Raffel and Leandro von Werra and Thomas Wolf},
  year          = {2025},
  eprint        = {2502.02737},
  archivePrefix = {arXiv},
  primaryClass  = {cs.CL},
  url           = {https://arxiv.org/abs/2502.02737}
}""",
}

# report.json's metrics_tuned keys -> (row name, model-index metric type, metric config) for the card.
METRICS = [
    ("subset_accuracy", "Subset accuracy (exact match)", "accuracy", "subset"),
    ("micro_f1", "Micro F1", "f1", "micro"),
    ("macro_f1", "Macro F1", "f1", "macro"),
    ("macro_precision", "Macro precision", "precision", "macro"),
    ("macro_recall", "Macro recall", "recall", "macro"),
]
PLOT_TITLES = {"per_label_f1": "F1 per label", "label_counts": "Examples per label in the evaluated split"}
# The model-index holds the three headline metrics of the issue.
MODEL_INDEX_METRICS = ("subset_accuracy", "micro_f1", "macro_f1")


def read_template() -> str:
    """The card template: the copy inside the installed package, else the repository's top-level file."""
    try:
        return (resources.files("emo_hf") / TEMPLATE_NAME).read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError, OSError):
        # Editable install or source checkout: the wheel's force-include has not copied it into emo_hf/.
        source_copy = Path(__file__).resolve().parent.parent / TEMPLATE_NAME
        if source_copy.is_file():
            return source_copy.read_text(encoding="utf-8")
        raise FileNotFoundError(
            f"{TEMPLATE_NAME} is neither inside the installed emo_hf package nor at {source_copy}; "
            "reinstall emo_hf (pip install --force-reinstall emo_hf) or run from a source checkout"
        ) from None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); regenerate it or delete it to leave it out of the card")


def _number(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _cell(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(item) for item in value)
    elif isinstance(value, dict):
        value = json.dumps(value, sort_keys=True)
    return _number(value).replace("|", "\\|").replace("\n", " ")


def _threshold(value: Any) -> Any:
    return f"{value:g}" if isinstance(value, float) else value


def _table(header: list[str], rows: list[list[Any]]) -> dict:
    return {"header": header, "rows": [[_cell(value) for value in row] for row in rows]}


def _is_hub_id(name: Any) -> bool:
    if not isinstance(name, str) or name.count("/") != 1 or os.path.exists(name):
        return False
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _labels_and_thresholds(model_dir: Path, config: dict) -> tuple[list[str], list[float] | None]:
    id2label = config.get("id2label") or {}
    labels = [id2label[key] for key in sorted(id2label, key=lambda key: int(key))]
    if not labels:
        raise ValueError(f"{model_dir / 'config.json'} has no id2label: save the model with emo_hf so it names its labels")
    thresholds = config.get("thresholds")
    thresholds_file = model_dir / "thresholds.json"
    if thresholds_file.is_file():
        saved = _read_json(thresholds_file)
        saved = saved.get("thresholds", saved) if isinstance(saved, dict) and "thresholds" in saved else saved
        if isinstance(saved, dict):
            thresholds = [saved[label] for label in labels] if all(label in saved for label in labels) else thresholds
        elif isinstance(saved, list) and len(saved) == len(labels):
            thresholds = saved
    if isinstance(thresholds, dict):
        thresholds = [thresholds.get(label) for label in labels]
    return labels, thresholds


def _results(report: dict, labels: list[str], dataset_name: str | None) -> dict | None:
    tuned = report.get("metrics_tuned") or {}
    at_05 = report.get("metrics_at_0.5") or {}
    rows = [(key, name) for key, name, _, _ in METRICS if key in tuned]
    if not rows:
        return None
    split = report.get("split") or "evaluation"
    header = ["Metric", "Tuned thresholds"] + (["Threshold 0.5"] if at_05 else [])
    metric_rows = [[name, tuned[key]] + ([at_05.get(key, "")] if at_05 else []) for key, name in rows]
    n = report.get("n_examples")
    intro = f"On the {split} split" + (f" ({n} examples)" if n else "") + (f" of {dataset_name}" if dataset_name else "")
    intro += ", with the thresholds tuned per label" + (" (and, for comparison, one threshold of 0.5 for all labels)" if at_05 else "") + ":"
    results: dict[str, Any] = {"intro": intro, "metrics": _table(header, metric_rows), "ci95": None,
                               "baselines": None, "per_label": None, "plots": []}
    # report.json schema 1: {"at_0.5": [low, high], "tuned": [low, high]}, a percentile bootstrap over the examples.
    ci = (report.get("mean_f1_ci95") or {}).get("tuned") if isinstance(report.get("mean_f1_ci95"), dict) else None
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        results["ci95"] = (f"95% bootstrap confidence interval of the macro F1 (mean per-label F1) with the tuned "
                           f"thresholds: {_number(ci[0])} to {_number(ci[1])}.")
    baselines = report.get("baselines")
    if isinstance(baselines, dict) and baselines and all(isinstance(v, dict) for v in baselines.values()):
        # schema 1: {name: {"metrics_tuned": {...}, ...}}; each baseline's thresholds tuned like the model's
        baselines = [{"name": name, **(values.get("metrics_tuned") or {})} for name, values in baselines.items()]
    if isinstance(baselines, list) and baselines and all(isinstance(b, dict) for b in baselines):
        keys = [key for key, _, _, _ in METRICS if any(key in b for b in baselines)]
        if keys:
            names = {key: name for key, name, _, _ in METRICS}
            results["baselines"] = _table(
                ["Baseline"] + [names[key] for key in keys],
                [[b.get("name") or b.get("model") or "baseline"] + [b.get(key, "") for key in keys] for b in baselines],
            )
    per_label = report.get("per_label")
    if isinstance(per_label, list) and per_label:
        has_05 = any("f1_at_0.5" in row for row in per_label)
        header = ["Label", "Precision", "Recall", "F1"] + (["F1 at 0.5"] if has_05 else []) + ["Support", "Threshold"]
        results["per_label"] = _table(header, [
            [row.get("label"), row.get("precision"), row.get("recall"), row.get("f1")]
            + ([row.get("f1_at_0.5", "")] if has_05 else []) + [row.get("support"), _threshold(row.get("threshold"))]
            for row in per_label
        ])
    return results


def _plots(report: dict, model_dir: Path) -> list[dict]:
    plots = report.get("plots") or {}
    items = plots.items() if isinstance(plots, dict) else ((Path(str(p)).stem, p) for p in plots)
    found = []
    for name, path in items:
        if isinstance(path, str) and (model_dir / path).is_file():  # only plots shipped next to the card
            found.append({"title": PLOT_TITLES.get(str(name), str(name).replace("_", " ")),
                          "path": Path(path).as_posix()})
    return found


def _data_section(info: dict, labels: list[str], model_dir: Path, is_goemotions: bool) -> dict | None:
    data = info.get("data") or {}
    if not data:
        return None
    description = data.get("description")
    if not description and is_goemotions:
        description = ("GoEmotions (Demszky et al., 2020): English Reddit comments labelled with 27 emotions and "
                       "neutral, official train / validation / test split.")
    settings = info.get("settings") if isinstance(info.get("settings"), dict) else None
    balancing = data.get("balancing")
    if settings and settings.get("input_mode", "text") == "text":
        balancing = describe_text_balancing(settings)  # from the run's settings, not from a stored sentence
    if balancing:
        balancing = balancing[0].upper() + balancing[1:] + ("" if balancing.endswith(".") else ".")
    section: dict[str, Any] = {"description": description or "", "splits": None, "counts": None,
                               "balancing": balancing, "chart": None}
    splits = data.get("splits")
    if isinstance(splits, dict) and splits:
        section["splits"] = _table(["Split", "Examples"], list(splits.items()))
    before, after = data.get("label_counts_before"), data.get("label_counts_after")
    if isinstance(before, dict) and before:
        order = [label for label in labels if label in before] + [label for label in before if label not in labels]
        if isinstance(after, dict) and after:
            section["counts"] = _table(["Label", "Before balancing", "After balancing"],
                                       [[label, before[label], after.get(label, "")] for label in order])
        else:
            section["counts"] = _table(["Label", "Training examples"], [[label, before[label]] for label in order])
    chart = data.get("chart")
    if isinstance(chart, str) and (model_dir / chart).is_file():
        section["chart"] = Path(chart).as_posix()
    if not (section["description"] or section["splits"] or section["counts"]):
        return None
    return section


def _protocol(report: dict, info: dict, is_goemotions: bool) -> list[str]:
    selection = info.get("selection") or {}
    sentences = []
    split = report.get("split")
    if split:
        source = "of the official GoEmotions split" if is_goemotions else "of the data's split"
        sentences.append(_protocol_split_sentence(split, selection.get("threshold_split"), source))
    if selection.get("checkpoint_metric"):
        sentences.append(f"The checkpoint kept is the one with the best {selection['checkpoint_metric']} on the "
                         "validation split.")
    threshold_split = selection.get("threshold_split") or ("validation" if report.get("val_tuned") else None)
    if threshold_split:
        objective = selection.get("threshold_objective") or "F1"
        sentences.append(f"One decision threshold per label was tuned on the {threshold_split} split to maximise "
                         f"{objective}; the same thresholds are applied on the {split or 'test'} split.")
    if isinstance(report.get("mean_f1_ci95"), dict):
        sentences.append("Confidence intervals are 95% percentile bootstrap intervals over the evaluated examples.")
    check = info.get("reload_check") or {}
    if check.get("ok") is True:
        sentences.append(f"After training, this folder was reloaded and reproduced the trained model's probabilities on "
                         f"{check.get('rows')} validation texts (largest difference "
                         f"{_number(check.get('max_abs_difference'))}).")
    return sentences


def reload_warning(info: dict) -> str | None:
    """The card's first limitation when emo_hf.reload_check found that the saved folder differs from the trained
    model (training_info.json's `reload_check`)."""
    check = info.get("reload_check") or {}
    if check.get("ok") is not False:
        return None
    return (f"**Warning:** after training, this folder reloaded did not reproduce the trained model: probabilities "
            f"on {check.get('rows')} validation texts differed by up to "
            f"{_number(check.get('max_abs_difference'))}. The scores "
            "above come from the reloaded folder; the training run's own validation scores (training_info.json) "
            "may be higher. Treat this model as suspect.")


# Folder names that say nothing about the model (a card titled "# model" is no title): the card names it instead.
GENERIC_NAMES = {"model", "models", "export", "exported", "out", "output", "outputs", "run", "runs", "final", "best"}


def describe_no_emotion(fraction: float | None) -> str:
    """How much of the no-emotion train rows a run kept, in words: 'all', 'none', '50% (seeded sample)'."""
    if fraction is None:
        return "no-emotion rows: unknown share kept"
    if fraction >= 1:
        return "all no-emotion rows kept"
    if fraction <= 0:
        return "no no-emotion rows kept"
    return f"{fraction:.0%} of the no-emotion rows kept (seeded sample)"


def describe_text_balancing(settings: dict) -> str:
    """The train-split treatment of a text-mode run, from its settings (train_balance, target_per_label,
    keep_no_emotion, train_subset): what training_info.json stores and the card prints."""
    parts = [f"random duplication of rare-label rows to {settings.get('target_per_label')} positives per label"
             if settings.get("train_balance") == "random" else "no oversampling",
             describe_no_emotion(settings.get("keep_no_emotion", 1.0))]
    if settings.get("train_subset"):
        parts.append(f"a seeded subset of {settings['train_subset']} rows")
    return ", ".join(parts) + " (train split only)"


def card_title(model_dir: Path, repo_id: str | None, name: str | None, base: str | None) -> str:
    """The repo's name, else the folder's (`name`, e.g. the export target), unless that is generic ('model',
    'checkpoint-12', a temp name): then '<backbone>-emotions'."""
    if repo_id:
        return repo_id.split("/")[-1]
    name = name or model_dir.resolve().name
    if name.lower() in GENERIC_NAMES or name.startswith(".") or name.startswith("checkpoint-"):
        return f"{str(base).rstrip('/').split('/')[-1]}-emotions" if base else "emo_hf emotion classifier"
    return name


def _protocol_split_sentence(split: str, threshold_split: str | None, source: str) -> str:
    """What the evaluated split was used for: only a split that nothing chose from is called unseen."""
    if split == "train":
        return f"Scores are on the train split ({source}): the model was trained on it, so they overstate its quality."
    if split == (threshold_split or "validation"):
        return (f"Scores are on the {split} split ({source}), which chose the checkpoint and tuned the thresholds: "
                "they are optimistic, not a held-out estimate.")
    return (f"Scores are on the {split} split ({source}), which training, checkpoint choice and threshold tuning "
            "never saw.")


def render_model_card(model_dir: str | Path, *, repo_id: str | None = None, name: str | None = None) -> str:
    """The README.md text of the model saved in `model_dir` (see the module docstring for what it reads).

    `repo_id` ("org/name") goes into the loading examples; without it they load the folder by its name (`name`,
    default the folder's own: export renders in a staging folder and passes the final name).

    >>> text = render_model_card("runs/default/model", repo_id="my-org/emo-minilm")  # doctest: +SKIP
    """
    import jinja2
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    model_dir = Path(model_dir)
    config_file = model_dir / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} not found: render_model_card needs a model folder saved by emo_hf")
    config = _read_json(config_file)
    report = _read_json(model_dir / "report.json") if (model_dir / "report.json").is_file() else {}
    info = _read_json(model_dir / "training_info.json") if (model_dir / "training_info.json").is_file() else {}
    labels, thresholds = _labels_and_thresholds(model_dir, config)

    data_info = info.get("data") or {}
    base_model = info.get("base_model") if _is_hub_id(info.get("base_model")) else None
    if base_model is None and _is_hub_id(config.get("backbone_name_or_path")):
        base_model = config["backbone_name_or_path"]
    is_goemotions = str(data_info.get("source", "")).lower() in ("goemotions", "go_emotions", GOEMOTIONS_HUB_ID)
    dataset_id = data_info.get("dataset_id") or (GOEMOTIONS_HUB_ID if is_goemotions else None)
    dataset_id = dataset_id if _is_hub_id(dataset_id) else None
    dataset_name = "GoEmotions" if is_goemotions else (dataset_id or None)
    lora = config.get("lora") if isinstance(config.get("lora"), dict) else None
    backbone_source = config.get("backbone_name_or_path")
    title = card_title(model_dir, repo_id, name, base_model)
    folder_name = name or model_dir.resolve().name
    has_backbone_file = (model_dir / "backbone.safetensors").is_file()
    has_adapter = (model_dir / "adapter" / "adapter_model.safetensors").is_file()
    held_out = report.get("split") not in (None, "train", (info.get("selection") or {}).get("threshold_split")
                                           or "validation")

    tuned = report.get("metrics_tuned") or {}
    eval_results = [
        EvalResult(
            task_type="text-classification",
            task_name="Multi-label emotion classification",
            dataset_type=dataset_id or "custom",
            dataset_name=dataset_name or "custom data",
            dataset_config="simplified" if is_goemotions else None,
            dataset_split=report.get("split"),
            metric_type=metric_type,
            metric_name=name,
            metric_config=metric_config,
            metric_value=float(tuned[key]),
        )
        for key, name, metric_type, metric_config in METRICS
        if key in MODEL_INDEX_METRICS and isinstance(tuned.get(key), (int, float)) and held_out
    ]  # the model-index claims held-out results only: a validation/train report is shown, but labelled, below
    tags = ["emo_hf", "text-classification", "multi-label-classification", "emotion"]
    tags += ["goemotions"] if is_goemotions else []
    tags += ["lora", "peft"] if lora else []
    card_data = ModelCardData(
        language=info.get("language") or "en",
        license=info.get("license") or "apache-2.0",
        library_name="transformers",
        base_model=base_model,
        datasets=[dataset_id] if dataset_id else None,
        tags=tags,
        pipeline_tag="text-classification",
        model_name=title if eval_results else None,
        eval_results=eval_results or None,
    )

    intro = (f"{title} is a multi-label emotion classifier: for an English text it gives each of its {len(labels)} "
             "emotions a probability, and decides yes or no for each with a threshold of its own.")
    how = (f" It was built with emo_hf on top of [{base_model}](https://huggingface.co/{base_model})" if base_model
           else " It was built with emo_hf")  # a local backbone path means nothing elsewhere: not printed
    if lora and has_adapter:
        how += f", with LoRA adapters (rank {lora.get('r')}) and a classification head"
    elif has_backbone_file:
        how += ", with the whole backbone fine-tuned and a classification head"
    else:
        how += ", with a trained classification head on the unchanged backbone"
    if isinstance(config.get("focal_gamma"), (int, float)):
        how += f", trained under a focal loss with gamma {config['focal_gamma']}"
    intro += how + (f", with the preset `{info['preset']}`." if info.get("preset") else ".")
    if config.get("input_mode") == "embedding" and config.get("encoder_name"):
        intro += (f" The backbone does not read the text itself: the text is embedded with `{config['encoder_name']}` "
                  f"and a trained projection turns that vector into {config.get('num_soft_tokens')} soft token(s).")
    # Each item only when its file is in the folder: the card describes what is there, not what should be.
    files = [("adapter/adapter_model.safetensors", "the LoRA adapter (`adapter/`)"),
             ("backbone.safetensors", "the whole fine-tuned backbone (`backbone.safetensors`)"),
             ("head.safetensors", "the classification head (`head.safetensors`)"),
             ("thresholds.json", "the per-label thresholds (`thresholds.json`, also in `config.json`)"),
             ("tokenizer_config.json", "the tokenizer"),
             ("modeling.py", "the model code for `trust_remote_code`"),
             ("report.json", "the evaluation report (`report.json`)"),
             ("training_info.json", "the training record (`training_info.json`)")]
    shipped = [what for file, what in files if (model_dir / file).is_file()]
    contents = ("This repository holds " if repo_id else f"The folder `{folder_name}` holds ") + ", ".join(shipped) + \
        " and this card."
    source = base_model or ("the local folder named by `backbone_name_or_path` in `config.json`"
                            if backbone_source else None)
    source = f"`{base_model}`" if base_model else source
    if not has_backbone_file and source:
        what = "The backbone's base weights are not copied" + (" (only the LoRA adapter is)" if has_adapter else "")
        contents += f" {what}: they load from {source}"
        contents += " and are quantised to 4-bit (NF4) on a GPU." if config.get("load_in_4bit") else "."
    elif has_backbone_file and source:
        contents += f" The backbone started from {source}; its fine-tuned weights are the ones in this folder."

    results = _results(report, labels, dataset_name) if report else None
    if results is not None:
        results["plots"] = _plots(report, model_dir)
    hyperparameters = None
    params = dict(info.get("hyperparameters") or {})
    if lora and not any(key.startswith("lora") for key in params):
        params.update({f"lora_{key}" if not key.startswith("lora") else key: value for key, value in lora.items()})
    if params:
        # `:g` keeps settings as written (2e-4, 2.0), where metrics get a fixed 4 digits.
        hyperparameters = _table(["Setting", "Value"], [
            [name, f"{value:g}" if isinstance(value, float) else value] for name, value in sorted(params.items())])

    limitations = [warning for warning in [reload_warning(info)] if warning]
    small = [row for row in report.get("per_label") or [] if isinstance(row.get("support"), int)
             and row["support"] < SMALL_SUPPORT]
    if small:
        listed = ", ".join(f"{row['label']} ({row['support']})" for row in sorted(small, key=lambda r: r["support"]))
        limitations.append(f"Some labels have fewer than {SMALL_SUPPORT} examples in the {report.get('split')} split, so "
                           f"their scores are uncertain: {listed}.")
    if is_goemotions:
        limitations.append("The training data are English Reddit comments (GoEmotions). Text from elsewhere (reviews, "
                           "chat, other social media, formal writing) and other languages differ in style and "
                           "vocabulary: expect lower scores there. The labels say how raters read a comment, not how "
                           "its writer felt.")
    selection = info.get("selection") or {}
    trade_off = ("another balance of precision and recall needs other thresholds (edit `thresholds` in `config.json` "
                 "and `thresholds.json`).")
    threshold_split = selection.get("threshold_split") or ("validation" if report.get("val_tuned") else None)
    if threshold_split:
        objective = selection.get("threshold_objective") or "F1"
        limitations.append(f"The thresholds were tuned for {objective} on the {threshold_split} split; " + trade_off)
    else:
        limitations.append("Each label's threshold sets its balance of precision and recall; " + trade_off)
    limitations.append("Emotion labels are subjective: annotators often disagree, and a confident prediction is not a "
                       "fact about the writer.")

    citations = [{"what": "GoEmotions", "bibtex": GOEMOTIONS_BIBTEX}] if is_goemotions else []
    base_model_link = None
    if base_model in BASE_MODEL_BIBTEX:
        citations.append({"what": f"The base model ({base_model})", "bibtex": BASE_MODEL_BIBTEX[base_model]})
    elif base_model:
        base_model_link = f"For the base model, see how [{base_model}](https://huggingface.co/{base_model}) asks to be cited."

    context = {
        "card_data": card_data.to_yaml(),
        "title": title,
        "intro": intro,
        "labels": labels,
        "contents": contents,
        "repo_ref": repo_id or f"./{folder_name}",  # no repo yet: the folder, loaded from the folder above it
        "load_in_4bit": bool(config.get("load_in_4bit")),
        "results": results,
        "data": _data_section(info, labels, model_dir, is_goemotions),
        "hyperparameters": hyperparameters,
        "protocol": _protocol(report, info, is_goemotions) if report else [],
        "limitations": limitations,
        # Without a per-label report table, the thresholds still get a table of their own.
        "thresholds": _table(["Label", "Threshold"], [[label, _threshold(t)] for label, t in zip(labels, thresholds)])
        if thresholds and not (results and results["per_label"]) else None,
        "citations": citations,
        "base_model_link": base_model_link,
    }
    # Our own jinja2 environment rather than ModelCard.from_template: StrictUndefined turns a missing value into an
    # error instead of an empty string, and trim_blocks keeps the markdown free of the blank lines of block tags.
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                                     keep_trailing_newline=True)
    text = environment.from_string(read_template()).render(**context)
    text = "\n".join(line.rstrip() for line in text.splitlines())
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    card = ModelCard(text.strip() + "\n")  # parses the YAML block: fails here, not on the Hub, if it is broken
    return str(card)


def write_model_card(model_dir: str | Path, *, repo_id: str | None = None, name: str | None = None) -> Path:
    """Render the card of `model_dir` and write it to `model_dir/README.md` (atomically); return its path."""
    model_dir = Path(model_dir)
    text = render_model_card(model_dir, repo_id=repo_id, name=name)
    target = model_dir / "README.md"
    temporary = model_dir / ".README.md.tmp"
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, target)
    return target
