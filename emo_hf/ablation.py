"""Ablation of one backbone: balancing (none / undersampling / random / SMOTE / ISMOTE), focal loss vs BCE, text vs
embedding input, each a full train + test evaluation, tabulated on validation and test.

    emo-hf ablate --source ../shared/goemotions --out runs/ablation --preset minilm --epochs 2
    emo-hf ablate --source ../shared/goemotions --out runs/ablation --only text-none,embedding-ismote

    from emo_hf.ablation import run_ablation
    summary = run_ablation("../shared/goemotions", "runs/ablation", preset="minilm", epochs=2)

Variants (all with the same preset, seed, epochs and optimiser settings; see VARIANTS):

    text-none          text mode, every train row, no oversampling, focal loss (the preset's gamma)
    text-undersample   text mode, half of the no-emotion train rows dropped
    text-random        text-undersample + rare-label rows duplicated up to the target per label
    text-bce           text-undersample with plain BCE (focal_gamma 0) instead of focal loss
    embedding-none     embedding mode on a `build_dataset(balance="none")` folder (no-emotion rows halved)
    embedding-random   ... balance="random" (duplicated sentence vectors)
    embedding-smote    ... balance="smote"
    embedding-ismote   ... balance="ismote"

Layout of OUT:

    ablation_settings.json     the shared settings; a later call with other settings is refused (use a new --out)
    data-<balance>/            dataset folders (built once; text variants read the `raw` config of data-none)
    <variant>/                 checkpoints/, model/ and the test report (report.json marks the variant as done)
    ablation.json, ablation.md, ablation.png

Resumable: a variant with OUT/<variant>/report.json is skipped; one killed while training continues from its last
checkpoint; one killed while being evaluated is evaluated again from its saved model. The table lists every finished
variant of OUT, so the variants can be run in several calls (`--only`).

`--train-subset N` draws the same seeded N train rows for every variant (the rows `TrainSettings.train_subset` would
pick) before the dataset folders are built, so the embedding-mode balancing also starts from those rows.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_TARGET_PER_LABEL = 1500
KEEP_NO_EMOTION = 0.5  # every variant but text-none keeps half of the no-emotion train rows
SETTINGS_FILE = "ablation_settings.json"
RESULT_FILES = ("ablation.json", "ablation.md", "ablation.png")


@dataclass(frozen=True)
class Variant:
    name: str
    input_mode: str  # "text" | "embedding"
    balancing: str  # human-readable, for the table
    data_balance: str  # build_dataset(balance=...) of the dataset folder it reads ("none" for text variants)
    keep_no_emotion: float = KEEP_NO_EMOTION
    train_balance: str = "none"  # text mode: "none" | "random"
    bce: bool = False  # plain BCE instead of the preset's focal loss


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("text-none", "text", "none (all rows)", "none", keep_no_emotion=1.0),
    Variant("text-undersample", "text", "no-emotion x0.5", "none"),
    Variant("text-random", "text", "no-emotion x0.5 + random", "none", train_balance="random"),
    Variant("text-bce", "text", "no-emotion x0.5", "none", bce=True),
    Variant("embedding-none", "embedding", "no-emotion x0.5", "none"),
    Variant("embedding-random", "embedding", "no-emotion x0.5 + random", "random"),
    Variant("embedding-smote", "embedding", "no-emotion x0.5 + SMOTE", "smote"),
    Variant("embedding-ismote", "embedding", "no-emotion x0.5 + ISMOTE", "ismote"),
)}


def parse_only(only: str | list[str] | None) -> list[str]:
    """'a,b' or ['a', 'b'] -> variant names in the canonical order; None -> all of them."""
    if only is None:
        return list(VARIANTS)
    names = [n.strip() for n in (only.split(",") if isinstance(only, str) else only) if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        raise ValueError(f"--only {','.join(names) or only!r}: unknown variant(s) {unknown}; choose from "
                         f"{', '.join(VARIANTS)} (comma-separated).")
    return [n for n in VARIANTS if n in names]


def variant_settings(base, variant: Variant, target_per_label: int):
    """The TrainSettings of one variant: `base` (preset + shared overrides) with the variant's mode, balancing, loss."""
    settings = dataclasses.replace(
        base, input_mode=variant.input_mode, keep_no_emotion=variant.keep_no_emotion,
        train_balance=variant.train_balance, target_per_label=target_per_label,
    )
    if variant.bce:
        settings = dataclasses.replace(settings, focal_gamma=0.0, focal_alpha=None)
    return settings


def loss_name(settings) -> str:
    if settings.focal_gamma == 0 and settings.focal_alpha is None:
        return "BCE"
    alpha = f", α={settings.focal_alpha:g}" if settings.focal_alpha is not None else ""
    return f"focal (γ={settings.focal_gamma:g}{alpha})"


def subset_indices(n_rows: int, train_subset: int | None, seed: int) -> np.ndarray | None:
    """The rows `emo_hf.training_data.select_train_rows` keeps for `train_subset` (same generator, same draw)."""
    if train_subset is None or train_subset >= n_rows:
        return None
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(np.arange(n_rows), size=train_subset, replace=False))


# ---------------------------------------------------------------------------------------------------------- data


def _data_matches(folder: Path, balance: str, target: int, seed: int, train_rows: int | None) -> bool:
    info_path = folder / "build_info.json"
    if not info_path.is_file():
        return False
    info = json.loads(info_path.read_text(encoding="utf-8"))
    settings = info.get("balance") or {}
    ok = (settings.get("method") == balance and settings.get("target_per_label") == target
          and float(settings.get("keep_no_emotion", -1)) == KEEP_NO_EMOTION and info.get("seed") == seed)
    if train_rows is not None:
        ok = ok and ((info.get("rows") or {}).get("raw") or {}).get("train") == train_rows
    if not ok:
        raise ValueError(f"{folder} was built with other settings ({info.get('command')}); remove it or use a new --out.")
    return True


def ensure_data(source, out: Path, balances: list[str], *, target_per_label: int, seed: int,
                train_subset: int | None, cache_dir=None, show_progress: bool = True) -> dict[str, Path]:
    """Build OUT/data-<balance> for each balance that is not built yet -> {balance: folder}.

    The source is loaded once; with `train_subset` its train split is cut to the seeded subset first. The first build
    fills the embedding cache (on the GPU when there is one); the others read it.
    """
    folders = {b: out / f"data-{b}" for b in balances}
    missing = [b for b in balances if not (folders[b] / "build_info.json").is_file()]
    if not missing:
        for b in balances:
            _data_matches(folders[b], b, target_per_label, seed, None)
        return folders

    from .data.builder import _load_source, build_dataset

    dataset, _, _ = _load_source(source, None, seed)
    keep = subset_indices(len(dataset["train"]), train_subset, seed)
    if keep is not None:
        dataset["train"] = dataset["train"].select(keep.tolist())
    for b in balances:
        if b not in missing:
            _data_matches(folders[b], b, target_per_label, seed, len(dataset["train"]))
    for b in missing:
        started = time.time()
        # the original source (for the folder's provenance) unless rows were cut: then the cut DatasetDict
        build_dataset(dataset if keep is not None else source, folders[b], balance=b, target_per_label=target_per_label,
                      keep_no_emotion=KEEP_NO_EMOTION, seed=seed, cache_dir=cache_dir, show_progress=show_progress)
        print(f"data-{b}: built in {time.time() - started:.0f} s", flush=True)
    return folders


# ---------------------------------------------------------------------------------------------------- variants


def run_variant(variant: Variant, settings, data_dir: Path, out: Path, *, show_progress: bool = True) -> None:
    """Train (continuing an interrupted run) and evaluate on test into `out` (report.json written last)."""
    from .pipeline import evaluate_model
    from .checkpoints import newest_complete_checkpoint
    from .trainer import TRAINING_INFO_NAME, train

    model_dir = out / "model"
    if not (model_dir / TRAINING_INFO_NAME).is_file():
        checkpoints = out / "checkpoints"
        resume = newest_complete_checkpoint(str(checkpoints)) is not None
        if not resume:  # nothing to continue from: start clean (a half-written first checkpoint is discarded)
            shutil.rmtree(checkpoints, ignore_errors=True)
        else:
            print(f"  {variant.name}: continuing from {newest_complete_checkpoint(str(checkpoints))}", flush=True)
        train(data_dir, out, settings, resume=resume, show_progress=show_progress)
    evaluate_model(model_dir, data_dir, "test", out, baselines=False, show_progress=show_progress,
                   meta={"preset": settings.preset, "ablation_variant": variant.name})


def variant_row(variant: Variant, out: Path) -> dict[str, Any]:
    """One table row from a finished variant folder (its report.json and model/training_info.json)."""
    from .presets import TrainSettings
    from .trainer import TRAINING_INFO_NAME

    report = json.loads((out / "report.json").read_text())
    info = json.loads((out / "model" / TRAINING_INFO_NAME).read_text())
    settings = TrainSettings(**info["settings"])
    return {
        "name": variant.name,
        "mode": variant.input_mode,
        "balancing": variant.balancing,
        "loss": loss_name(settings),
        "train_rows": info.get("train_rows"),
        "val_macro_f1_at_0.5": info["validation_metrics_at_0.5"]["macro_f1"],
        "val_macro_f1_tuned": info["validation_metrics_tuned"]["macro_f1"],
        "test_macro_f1_at_0.5": report["metrics_at_0.5"]["macro_f1"],
        "test_macro_f1_tuned": report["metrics_tuned"]["macro_f1"],
        "test_micro_f1_tuned": report["metrics_tuned"]["micro_f1"],
        "train_seconds": info.get("train_seconds"),
        "epochs_run": info.get("epochs_run"),
        "device": info.get("device"),
        "data": info.get("data_dir"),
    }


# -------------------------------------------------------------------------------------------------------- main


def run_ablation(
    source,
    out: str | os.PathLike,
    preset: str = "minilm",
    *,
    epochs: float | None = None,
    learning_rate: float | None = None,
    batch_size: int | None = None,
    train_subset: int | None = None,
    target_per_label: int = DEFAULT_TARGET_PER_LABEL,
    seed: int | None = None,
    only: str | list[str] | None = None,
    cache_dir: str | os.PathLike | None = None,
    show_progress: bool = True,
    command: str | None = None,
) -> dict[str, Any]:
    """Run the selected variants not finished yet, then write OUT/ablation.{json,md,png}; returns the summary."""
    from .presets import get_preset
    from .training_record import device_name

    out = Path(out)
    names = parse_only(only)
    if target_per_label <= 0:
        raise ValueError(f"--target-per-label {target_per_label} must be positive, e.g. 1500.")
    base = get_preset(preset).replace(epochs=epochs, learning_rate=learning_rate, batch_size=batch_size,
                                      train_subset=train_subset, seed=seed)
    shared = {"preset": preset, "backbone": base.backbone, "epochs": base.epochs, "learning_rate": base.learning_rate,
              "batch_size": base.batch_size, "train_subset": base.train_subset, "seed": base.seed,
              "target_per_label": target_per_label, "keep_no_emotion": KEEP_NO_EMOTION}
    settings_path = out / SETTINGS_FILE
    if settings_path.is_file():
        before = json.loads(settings_path.read_text())
        if before != shared:
            changed = {k: (before.get(k), shared.get(k)) for k in shared if before.get(k) != shared.get(k)}
            raise ValueError(f"{out} holds an ablation run with other settings (was -> now: {changed}); pass the same "
                             "options to continue it, or use a new --out.")

    todo = [n for n in names if not (out / n / "report.json").is_file()]
    for n in names:
        if n not in todo:
            print(f"[{names.index(n) + 1}/{len(names)}] {n}: done already ({out / n / 'report.json'}), skipped", flush=True)
    data: dict = {}
    if todo:
        balances = list(dict.fromkeys(VARIANTS[n].data_balance for n in todo))
        data = ensure_data(source, out, balances, target_per_label=target_per_label, seed=base.seed,
                           train_subset=base.train_subset, cache_dir=cache_dir, show_progress=show_progress)
    # Written once the data is there, so a wrong --source leaves no folder behind that claims a run.
    out.mkdir(parents=True, exist_ok=True)
    if not settings_path.is_file():
        settings_path.write_text(json.dumps(shared, indent=2) + "\n")
    for n in todo:
        variant = VARIANTS[n]
        settings = variant_settings(base, variant, target_per_label)
        position = f"[{names.index(n) + 1}/{len(names)}] {n}"
        print(f"{position}: start ({variant.input_mode} mode, {variant.balancing}, {loss_name(settings)}, "
              f"data {data[variant.data_balance].name})", flush=True)
        started = time.time()
        run_variant(variant, settings, data[variant.data_balance], out / n, show_progress=show_progress)
        row = variant_row(variant, out / n)
        print(f"{position}: end in {time.time() - started:.0f} s, validation macro-F1 {row['val_macro_f1_tuned']:.4f} "
              f"(tuned), test macro-F1 {row['test_macro_f1_tuned']:.4f} (tuned) / {row['test_macro_f1_at_0.5']:.4f} "
              f"(0.5)", flush=True)

    rows = [variant_row(VARIANTS[n], out / n) for n in VARIANTS if (out / n / "report.json").is_file()]
    summary = {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": device_name(),
        "source": str(source),
        "settings": shared,
        "base_settings": base.to_dict(),
        "variants": rows,
    }
    write_results(out, summary)
    return summary


# ----------------------------------------------------------------------------------------------------- output


COLUMNS: list[tuple[str, str]] = [
    ("name", "variant"), ("mode", "mode"), ("balancing", "balancing"), ("loss", "loss"), ("train_rows", "train rows"),
    ("val_macro_f1_at_0.5", "val macro-F1 @0.5"), ("val_macro_f1_tuned", "val macro-F1 tuned"),
    ("test_macro_f1_at_0.5", "test macro-F1 @0.5"), ("test_macro_f1_tuned", "test macro-F1 tuned"),
    ("test_micro_f1_tuned", "test micro-F1 tuned"), ("train_seconds", "train s"),
]


def _cell(value, key: str = "") -> str:
    if value is None:
        return "–"
    if key == "train_seconds":
        return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"
    if isinstance(value, float):
        return f"{value:.4f}" if value <= 1.0 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def format_markdown(summary: dict[str, Any]) -> str:
    s = summary["settings"]
    lines = [
        f"# Ablation: {s['preset']} ({s['backbone']})",
        "",
        f"Same backbone, seed {s['seed']}, {s['epochs']:g} epoch(s), learning rate {s['learning_rate']:g}, batch size "
        f"{s['batch_size']}" + (f", a seeded subset of {s['train_subset']:,} train rows" if s["train_subset"] else "")
        + f"; oversampling to {s['target_per_label']:,} positives per label. Validation and test keep their natural "
        "distribution. \"tuned\": per-label thresholds chosen on validation (so the validation tuned score is optimistic; "
        "the test tuned score is the fair one). Micro-F1 at the tuned thresholds.",
        "",
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "|".join("---" if key in ("name", "mode", "balancing", "loss") else "---:" for key, _ in COLUMNS) + "|",
    ]
    for row in summary["variants"]:
        lines.append("| " + " | ".join(_cell(row.get(key), key) for key, _ in COLUMNS) + " |")
    devices = sorted({row["device"] for row in summary["variants"] if row.get("device")} - {summary["machine"]})
    lines += [
        "",
        f"- Command: `{summary['command']}`" if summary.get("command") else "- Command: (called from Python)",
        f"- Date: {summary['date']}",
        f"- Machine: {summary['machine']}" + (f" (variants trained on: {', '.join(devices)})" if devices else ""),
        f"- Source: {summary['source']}",
        "",
        "![validation vs test macro-F1](ablation.png)",
        "",
    ]
    return "\n".join(lines)


def plot_results(rows: list[dict[str, Any]], path: Path) -> None:
    """Grouped bars: validation vs test macro-F1 (validation-tuned thresholds) per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["name"] for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(rows) + 2), 4.2))
    for offset, key, label in ((-0.2, "val_macro_f1_tuned", "validation"), (0.2, "test_macro_f1_tuned", "test")):
        values = [r[key] for r in rows]
        bars = ax.bar(x + offset, values, width=0.4, label=label)
        ax.bar_label(bars, labels=[f"{v:.3f}" for v in values], fontsize=7, padding=1)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("macro-F1 (validation-tuned thresholds)")
    ax.set_ylim(0, min(1.0, max([r["val_macro_f1_tuned"] for r in rows] + [r["test_macro_f1_tuned"] for r in rows]
                                + [0.1]) * 1.2))
    ax.legend()
    ax.set_title("Ablation: validation vs test macro-F1")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def write_results(out: Path, summary: dict[str, Any]) -> None:
    """ablation.png, ablation.md, then ablation.json (each written to a temp name and renamed)."""
    if summary["variants"]:
        plot_results(summary["variants"], out / "ablation.png")
    for name, text in (("ablation.md", format_markdown(summary)),
                       ("ablation.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out / name)
