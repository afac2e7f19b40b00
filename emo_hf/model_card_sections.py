"""The model card's parts, each built from the files saved in the model folder: the results table and the
model-index rows, the plots, the data section, the evaluation protocol, the reload warning, the title, and the
train-split descriptions that training_info.json stores. `emo_hf.model_card` puts them into the template.

    >>> from emo_hf.model_card_sections import describe_no_emotion
    >>> describe_no_emotion(0.5)
    '50% of the no-emotion rows kept (seeded sample)'
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

# report.json's metrics_tuned keys -> (row name, model-index metric type, metric config) for the card.
METRICS = [
    ("subset_accuracy", "Subset accuracy (exact match)", "accuracy", "subset"),
    ("micro_f1", "Micro F1", "f1", "micro"),
    ("macro_f1", "Macro F1", "f1", "macro"),
    ("macro_precision", "Macro precision", "precision", "macro"),
    ("macro_recall", "Macro recall", "recall", "macro"),
]
PLOT_TITLES = {"per_label_f1": "F1 per label", "label_counts": "Examples per label in the evaluated split"}


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
