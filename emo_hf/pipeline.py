"""Evaluation of a trained model on a split, and the main job: data -> train -> evaluate -> save.

    from emo_hf.pipeline import evaluate_model, run_pipeline
    report = evaluate_model("runs/default/model", "runs/default/data", split="test", out_dir="runs/default")
    run_pipeline("../shared/goemotions", "runs/default")            # what `emo-hf run` does

`evaluate_model` scores the model with the thresholds it was saved with (tuned on validation by `emo-hf train`) and at
0.5, next to two baselines fitted on the same natural train split and tuned on the same validation split: TF-IDF +
logistic regression and frozen sentence embeddings + logistic regression.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


def load_trained_model(model_dir: str | os.PathLike):
    """`AutoModel.from_pretrained(model_dir)` with emo_hf's classes registered; a clear error for a wrong folder."""
    from . import modeling  # noqa: F401  (registers the Auto classes)

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"{model_dir} is not a trained emo_hf model folder (no config.json). Train one first: "
            f"emo-hf train --data DATA --out OUT, then use OUT/model."
        )
    from transformers import AutoModel

    import torch

    from .export import check_model_folder

    check_model_folder(model_dir)  # names the missing, truncated or garbage file instead of a loader's traceback
    model = AutoModel.from_pretrained(str(model_dir))
    if torch.cuda.is_available() and model.get_input_embeddings().weight.device.type == "cpu":
        model.to("cuda")  # a 4-bit model is placed on the GPU by from_pretrained already
    model.eval()
    return model


def _check_labels(model_labels: list[str], data_labels: list[str], model_dir, data_dir) -> None:
    if list(model_labels) != list(data_labels):
        raise ValueError(
            f"The model in {model_dir} predicts {model_labels} but the dataset {data_dir} has labels {data_labels}. "
            f"Rebuild the data with the model's labels: emo-hf data build --labels {','.join(model_labels)} --out NEW_DIR"
        )


def split_probabilities(model, split, batch_size: int = 64, show_progress: bool = True) -> np.ndarray:
    """Probabilities [n, L] for one split: from its texts (text mode) or stored sentence vectors (embedding mode).

    Text mode hands `predict_proba` 32 batches' worth of rows at a time, so its length sort groups similar lengths
    across them. Batches of 64 rows in the split's order (before 2026-12-02) pad every short text to its batch's
    longest: GoEmotions' test split, MiniLM's tokenizer, 206,559 padded tokens (50% padding) against 109,490 (5%)
    sorted within 2,048 rows; and heavy padding is where a model is most sensitive to how it pads."""
    import torch
    from tqdm.auto import tqdm

    n = len(split)
    chunks = []
    device = model.get_input_embeddings().weight.device
    step = batch_size if model.config.input_mode == "embedding" else batch_size * 32
    with tqdm(total=n, desc="Predicting", disable=not show_progress, unit="row") as progress:
        for start in range(0, n, step):
            rows = split[start:start + step]
            if model.config.input_mode == "embedding":
                vectors = torch.as_tensor(np.asarray(rows["embedding"], dtype=np.float32), device=device)
                with torch.no_grad():
                    logits = model(sentence_embeddings=vectors).logits
                chunks.append(torch.sigmoid(logits.float()).cpu().numpy())
            else:
                chunks.append(model.predict_proba(rows["text"], batch_size=batch_size))
            progress.update(len(chunks[-1]))
    return np.concatenate(chunks) if chunks else np.zeros((0, model.config.num_labels), dtype=np.float32)


def baseline_probabilities(data_dir: str | os.PathLike, split: str, encoder: str | None,
                           show_progress: bool = True, backend: str | None = None) -> dict[str, dict[str, Any]]:
    """Both baselines fitted on the natural (raw) train split, thresholds tuned on validation, scored on `split`.

    `encoder`/`backend`: the build's (build_info.json), so the vectors the build cached are the ones used."""
    from .baselines import embedding_logreg_baseline, tfidf_logreg_baseline
    from .data.builder import load_built
    from .data.embedding import DEFAULT_ENCODER, embed_texts
    from .metrics import tune_thresholds

    raw = load_built(data_dir, "raw")
    y = {name: np.asarray(raw[name]["labels"], dtype=np.float32) for name in raw}
    texts = {name: list(raw[name]["text"]) for name in raw}
    wanted = {name: texts[name] for name in dict.fromkeys(["validation", split])}
    out: dict[str, dict[str, Any]] = {}
    tfidf = tfidf_logreg_baseline(texts["train"], y["train"], wanted)
    out["tfidf_logreg"] = {"probs": tfidf[split], "thresholds": tune_thresholds(y["validation"], tfidf["validation"])}
    encoder = encoder or DEFAULT_ENCODER
    names = list(dict.fromkeys(["train", "validation", split]))
    # one call for all splits: the cache is read once (a build has just embedded every text of them)
    stacked = embed_texts([t for name in names for t in texts[name]], encoder=encoder, show_progress=show_progress,
                          backend=backend)
    bounds = np.cumsum([0] + [len(texts[name]) for name in names])
    vectors = {name: stacked[bounds[i]:bounds[i + 1]] for i, name in enumerate(names)}
    emb = embedding_logreg_baseline(vectors["train"], y["train"], {k: vectors[k] for k in wanted})
    out["embedding_logreg"] = {"probs": emb[split], "thresholds": tune_thresholds(y["validation"], emb["validation"])}
    return out


def evaluate_model(
    model_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    split: str = "test",
    out_dir: str | os.PathLike | None = None,
    *,
    baselines: bool = True,
    batch_size: int = 64,
    show_progress: bool = True,
    meta: dict[str, Any] | None = None,
    probabilities: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Write report.json / report.md / PNGs for `split` into `out_dir` (default: the model folder) and return it.

    The model's saved thresholds are the tuned ones (validation, at training time); a copy of the report also goes into
    the model folder so an export or push carries it, and the model card there is regenerated. The model's
    probabilities are saved as `{split}_probabilities.npy` [n, L] next to the report; `probabilities=` reads such a
    file instead of running the model (a model trained and scored on a GPU machine, reported where the baselines run).
    """
    from .data.builder import load_built
    from .evaluation import write_report
    from .training_record import TRAINING_INFO_NAME, build_info, device_name
    from .training_data import label_names_of

    model_dir, data_dir = Path(model_dir), Path(data_dir)
    out_dir = report_dir(model_dir, split, out_dir)
    if probabilities is None:
        model = load_trained_model(model_dir)
        config = model.config
    else:
        from . import modeling  # noqa: F401  (registers EmoConfig)
        from transformers import AutoConfig

        model, config = None, AutoConfig.from_pretrained(str(model_dir))
    config_name = "raw" if config.input_mode == "text" else "balanced"
    data = load_built(data_dir, config_name)
    if split not in data:
        raise ValueError(f"{data_dir} ({config_name}) has no split {split!r}; choose one of {list(data)} (--split).")
    if len(data[split]) == 0:
        raise ValueError(f"The {split!r} split of {data_dir} is empty: nothing to evaluate.")
    _check_labels(config.labels, label_names_of(data[split]), model_dir, data_dir)

    started = time.time()
    if model is not None:
        probs = split_probabilities(model, data[split], batch_size=batch_size, show_progress=show_progress)
    else:
        probs = np.load(probabilities)
        if probs.shape != (len(data[split]), config.num_labels):
            raise ValueError(f"{probabilities} holds an array of shape {probs.shape}; the {split!r} split of {data_dir} "
                             f"needs ({len(data[split])}, {config.num_labels}). Pass the {split}_probabilities.npy "
                             "that `emo-hf evaluate` wrote for this split.")
    predict_seconds = time.time() - started
    y_true = np.asarray(data[split]["labels"], dtype=np.float32)
    info_path = model_dir / TRAINING_INFO_NAME
    try:
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    except ValueError as error:
        raise ValueError(f"{info_path} is not valid JSON ({error}); restore it from the training run or delete "
                         "it (the report then does not say how the thresholds were chosen)") from None
    val_tuned = (info.get("selection") or {}).get("threshold_split") == "validation"
    build = build_info(data_dir) or {}
    # a build from before backends were recorded embedded with PyTorch
    backend = build.get("embedding_backend", "torch") if build else None
    extra = baseline_probabilities(data_dir, split, build.get("encoder"), show_progress, backend) if baselines else None
    report_meta = {
        "model": str(model_dir),
        "base_model": config.backbone_name_or_path,
        "input_mode": config.input_mode,
        "data": str(data_dir),
        "command": "emo-hf " + " ".join(sys.argv[1:]) if Path(sys.argv[0]).name in ("emo-hf", "__main__.py") else None,
        "date": time.strftime("%Y-%m-%d"),
        "machine": device_name(),
        "predict_seconds": round(predict_seconds, 1) if model is not None else None,
        "train_seconds": info.get("train_seconds"),
        "threshold_source": "validation (tuned per label at training time)" if val_tuned else "saved in the model",
        **(meta or {}),
    }
    report = write_report(out_dir, label_names=config.labels, split=split, y_true=y_true, probs=probs,
                          thresholds=np.asarray([config.threshold_map()[n] for n in config.labels]),
                          val_tuned=val_tuned, baselines=extra, meta={k: v for k, v in report_meta.items() if v is not None})
    if probabilities is None or Path(probabilities).resolve() != (out_dir / f"{split}_probabilities.npy").resolve():
        tmp = out_dir / f".{split}_probabilities.tmp.npy"
        np.save(tmp, np.asarray(probs, dtype=np.float32))
        os.replace(tmp, out_dir / f"{split}_probabilities.npy")
    if split == HELD_OUT_SPLIT:  # only the held-out report goes next to the model, into its card and its export
        if out_dir.resolve() != model_dir.resolve():
            copy_report_into_model(out_dir, model_dir)
        refresh_model_card(model_dir)
    return report


HELD_OUT_SPLIT = "test"


def report_dir(model_dir: Path, split: str, out_dir: str | os.PathLike | None) -> Path:
    """Where the report of `split` goes: `out_dir`, else the model folder for the test split and
    MODEL/<split>_report/ for another (validation chose the checkpoint and thresholds: its report must not replace
    the test report that the card and the Hub model-index show)."""
    if out_dir is None:
        return model_dir if split == HELD_OUT_SPLIT else model_dir / f"{split}_report"
    out_dir = Path(out_dir)
    if split != HELD_OUT_SPLIT and out_dir.resolve() == model_dir.resolve():
        raise ValueError(f"--out {out_dir}: the model folder keeps its test report; a {split!r} report goes to "
                         f"{model_dir / (split + '_report')} (leave out --out) or another folder")
    return out_dir


def copy_report_into_model(report_dir: Path, model_dir: Path) -> None:
    """report.json, report.md and the plots go next to the model, so export/push and the card carry them."""
    from .evaluation import REPORT_FILES

    for name in REPORT_FILES:
        if (report_dir / name).is_file():
            tmp = model_dir / f".{name}.tmp"
            shutil.copyfile(report_dir / name, tmp)
            os.replace(tmp, model_dir / name)


def refresh_model_card(model_dir: Path) -> None:
    from .model_card import write_model_card

    write_model_card(model_dir)


def run_pipeline(
    source: str | None,
    out: str | os.PathLike,
    settings=None,
    *,
    data_dir: str | os.PathLike | None = None,
    resume: bool = False,
    baselines: bool = True,
    show_progress: bool = True,
) -> dict[str, Any] | None:
    """The main job (None on DDP ranks other than 0, which only train). Writes OUT/data (unless `data_dir` names an existing build), OUT/model, OUT/report.{json,md}.

    An existing complete dataset folder is reused (the build is seeded and deterministic, so rebuilding gives the
    same files); an interrupted training run continues with `resume=True`.
    """
    from .checkpoints import check_out_dir, cleanup_on_failure
    from .presets import get_preset

    out = check_out_dir(out)  # before the data build: a folder of the user's is refused in seconds, not hours
    timings: dict[str, float] = {}
    settings = settings or get_preset("minilm")
    if data_dir is not None and not (Path(data_dir) / "build_info.json").is_file():
        raise FileNotFoundError(f"--data {data_dir}: no dataset folder there (no build_info.json); build one with "
                                f"`emo-hf data build --out {data_dir}`, or leave out --data to build OUT/data")
    data_dir = Path(data_dir) if data_dir is not None else out / "data"
    started = time.time()
    with cleanup_on_failure(out, keep=("data",)):  # a finished data build is kept for the rerun
        return _run(source, out, settings, data_dir, resume, baselines, show_progress, timings, started)


def _run(source, out: Path, settings, data_dir: Path, resume: bool, baselines: bool, show_progress: bool,
         timings: dict[str, float], started: float) -> dict[str, Any]:
    from . import distributed
    from .data.builder import build_dataset
    from .trainer import train
    from .training_record import device_name

    with distributed.main_process_first():  # under DDP rank 0 builds, the others then find the folder built
        if not (data_dir / "build_info.json").is_file():
            if source is None:
                raise ValueError("No data: pass --source (the GoEmotions folder, a CSV/JSONL/parquet file or a Hub "
                                 "id), set EMO_HF_GOEMOTIONS, or point --data at a folder built by `emo-hf data build`.")
            build_dataset(source, data_dir, show_progress=show_progress)
        else:
            logger.info("Reusing the dataset folder %s (delete it to rebuild)", data_dir)
    timings["data_seconds"] = round(time.time() - started, 1)

    started = time.time()
    result = train(data_dir, out, settings, resume=resume, show_progress=show_progress)
    timings["train_total_seconds"] = round(time.time() - started, 1)
    if not distributed.is_main_process():
        # The test split is scored by rank 0 alone, in one process (its cost is small next to training, and one
        # process gives the report the single-process numbers); the other ranks are done.
        return None

    started = time.time()
    report = evaluate_model(result.model_dir, data_dir, "test", out, baselines=baselines, show_progress=show_progress,
                            meta={"preset": settings.preset})
    timings["evaluate_seconds"] = round(time.time() - started, 1)
    # The settings that trained (train_settings.json: e.g. bf16 dropped and fewer epochs on a CPU without bfloat16),
    # and the ones asked for when they differ.
    trained_file = out / "train_settings.json"
    trained = json.loads(trained_file.read_text()) if trained_file.is_file() else settings.to_dict()
    run_info = {"timings": timings, "settings": trained, "date": time.strftime("%Y-%m-%d"), "machine": device_name()}
    if trained != settings.to_dict():
        run_info["requested_settings"] = settings.to_dict()
    (out / "run_info.json").write_text(json.dumps(run_info, indent=2))
    return report
