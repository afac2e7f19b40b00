"""The model card (README.md) of a trained emo_hf model, generated from the files saved next to it.

    from emo_hf.model_card import render_model_card, write_model_card
    text = render_model_card("runs/default/model")                          # -> str
    path = write_model_card("runs/export", repo_id="my-org/emo-minilm")     # -> runs/export/README.md

Read from the model folder, each only when present: `config.json` (labels, thresholds, backbone, LoRA), `thresholds.json`
(wins over the thresholds in config.json), `report.json` (written by evaluation) and `training_info.json` (written by
training; keys listed in TRAINING_INFO_KEYS). The template is `model_card_template.md` at the top of the repository,
shipped inside the wheel as `emo_hf/model_card_template.md`. The YAML metadata goes through huggingface_hub's
`ModelCardData` / `EvalResult` (the `model-index` with subset accuracy, micro-F1 and macro-F1 on the evaluated split).
A section whose data is unknown is left out; nothing is filled with placeholder text. The sections themselves are
built in `emo_hf.model_card_sections`; this module reads the folder and fills the template.
"""

from __future__ import annotations

import logging
import os
from importlib import resources
from pathlib import Path

from .model_card_sections import (
    METRICS, _data_section, _is_hub_id, _labels_and_thresholds, _plots, _protocol, _read_json, _results, _table,
    _threshold, card_title, reload_warning,
)

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
             ("modeling.py", "the model code for `trust_remote_code` (`configuration.py`, `modeling*.py`)"),
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
