"""The evaluation report: report.json, report.md and PNG plots for one split, written atomically.

    >>> from emo_hf.metrics import tune_thresholds
    >>> from emo_hf.evaluation import write_report
    >>> thresholds = tune_thresholds(y_val, probs_val)                       # validation only
    >>> report = write_report("out/eval", label_names=labels, split="test", y_true=y_test, probs=probs_test,
    ...                       thresholds=thresholds, val_tuned=True,
    ...                       baselines={"tfidf_logreg": {"probs": tfidf_test, "thresholds": tfidf_val_thresholds}},
    ...                       meta={"model": "me/emo", "command": "emo-hf evaluate ...", "date": "..."})
    >>> report["metrics_tuned"]["macro_f1"]

`out_dir` then holds report.json, report.md, per_label_f1.png and label_counts.png (other files in it are kept; these
four are replaced together: they are written to a temporary folder next to `out_dir` and moved into place only when
all are complete).

report.json schema (version 1; emo_hf.model_card reads it, keep it stable)
-------------------------------------------------------------------------
All floats are plain JSON numbers (not rounded); metric values lie in [0, 1].

    {
      "schema_version": 1,
      "split": "test",                         # name of the evaluated split
      "n_examples": 5427,                      # rows in the split
      "labels": ["fear", ...],                 # label names, in logit order
      "val_tuned": true,                       # thresholds were tuned on validation (false: given / default)
      "thresholds": {"fear": 0.41, ...},       # the per-label thresholds behind every "tuned" number
      "metrics_at_0.5": {                      # every label at threshold 0.5
        "subset_accuracy": .., "micro_f1": .., "macro_f1": .., "macro_precision": .., "macro_recall": ..},
      "metrics_tuned": {...same five keys...}, # at "thresholds"
      "mean_f1_ci95": {"at_0.5": [low, high], "tuned": [low, high]},
                                               # 95% percentile bootstrap interval of macro F1 (= mean per-label F1),
                                               # 1000 resamples of the examples, seed 0
      "per_label": [                           # one row per label, in label order
        {"label": "fear", "support": 78,       # positives in this split
         "threshold": 0.41,                    # = thresholds[label]
         "precision": .., "recall": .., "f1": ..,                       # at the tuned threshold
         "precision_at_0.5": .., "recall_at_0.5": .., "f1_at_0.5": ..}, ...],
      "baselines": {                           # {} when none were given
        "tfidf_logreg": {"thresholds": {label: t}, "metrics_at_0.5": {...five...}, "metrics_tuned": {...five...},
                         "mean_f1_ci95": {"at_0.5": [lo, hi], "tuned": [lo, hi]},
                         "per_label_f1": {"at_0.5": {label: f1}, "tuned": {label: f1}}}, ...},
      "meta": {...},                           # free-form provenance from the caller: model id, data, command, date,
                                               # machine, training time ... (JSON-serialisable values)
      "plots": {"per_label_f1": "per_label_f1.png", "label_counts": "label_counts.png"}
                                               # file names relative to report.json
    }

Definitions: emo_hf.metrics (prob >= threshold is positive; zero_division=0; macro F1 is the mean per-label F1).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import SUMMARY_METRICS, as_thresholds, binarize, bootstrap_mean_f1_ci, multilabel_metrics

SCHEMA_VERSION = 1
REPORT_FILES: tuple[str, ...] = ("report.json", "report.md", "per_label_f1.png", "label_counts.png")
PLOTS: dict[str, str] = {"per_label_f1": "per_label_f1.png", "label_counts": "label_counts.png"}
METRIC_NAMES: dict[str, str] = {
    "subset_accuracy": "Subset accuracy (exact match)",
    "micro_f1": "Micro F1",
    "macro_f1": "Macro F1 (mean per-label F1)",
    "macro_precision": "Macro precision",
    "macro_recall": "Macro recall",
}
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def _summary(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {key: float(metrics[key]) for key in SUMMARY_METRICS}


def _ci(y_true: np.ndarray, probs: np.ndarray, thresholds: np.ndarray) -> list[float]:
    low, high = bootstrap_mean_f1_ci(y_true, binarize(probs, thresholds), n_resamples=BOOTSTRAP_RESAMPLES,
                                     seed=BOOTSTRAP_SEED, confidence=0.95)
    return [low, high]


def _evaluate(y_true: np.ndarray, probs: np.ndarray, thresholds: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Metrics at 0.5 and at `thresholds`, with bootstrap intervals for both."""
    at_half = multilabel_metrics(y_true, probs, 0.5, labels)
    tuned = multilabel_metrics(y_true, probs, thresholds, labels)
    return {
        "at_half": at_half,
        "tuned": tuned,
        "ci": {"at_0.5": _ci(y_true, probs, np.full(len(labels), 0.5)), "tuned": _ci(y_true, probs, thresholds)},
    }


def build_report(
    *,
    label_names: Sequence[str],
    split: str,
    y_true: np.ndarray,
    probs: np.ndarray,
    thresholds: float | Sequence[float] | np.ndarray,
    val_tuned: bool,
    baselines: Mapping[str, Mapping[str, Any]] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The report.json dictionary (see the module docstring) without writing anything."""
    labels = [str(name) for name in label_names]
    y = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    if y.ndim != 2 or y.shape[1] != len(labels):
        raise ValueError(f"y_true has shape {y.shape}; expected [n_examples, {len(labels)}] for labels {labels!r}.")
    if y.shape[0] == 0:
        raise ValueError(f"The {split!r} split is empty (0 examples): nothing to evaluate; pass a non-empty split.")
    t = as_thresholds(thresholds, len(labels))
    main = _evaluate(y, probs, t, labels)
    per_label = []
    for i, label in enumerate(labels):
        tuned_row, half_row = main["tuned"]["per_label"][label], main["at_half"]["per_label"][label]
        per_label.append({
            "label": label, "support": tuned_row["support"], "threshold": float(t[i]),
            "precision": tuned_row["precision"], "recall": tuned_row["recall"], "f1": tuned_row["f1"],
            "precision_at_0.5": half_row["precision"], "recall_at_0.5": half_row["recall"], "f1_at_0.5": half_row["f1"],
        })
    baseline_reports: dict[str, Any] = {}
    for name, spec in (baselines or {}).items():
        if not isinstance(spec, Mapping) or "probs" not in spec:
            raise ValueError(f"baselines[{name!r}] must be a dict with 'probs' ([n, L] on the {split!r} split) and "
                             "optionally 'thresholds' (tuned on validation), e.g. "
                             "{'tfidf_logreg': {'probs': p_test, 'thresholds': tune_thresholds(y_val, p_val)}}.")
        b_probs = np.asarray(spec["probs"], dtype=np.float64)
        if b_probs.shape != y.shape:
            raise ValueError(f"baselines[{name!r}]['probs'] has shape {b_probs.shape}; expected {y.shape} (the same "
                             f"{split!r} rows and labels as y_true).")
        b_t = as_thresholds(spec.get("thresholds", 0.5), len(labels))
        result = _evaluate(y, b_probs, b_t, labels)
        baseline_reports[str(name)] = {
            "thresholds": dict(zip(labels, b_t.tolist())),
            "metrics_at_0.5": _summary(result["at_half"]),
            "metrics_tuned": _summary(result["tuned"]),
            "mean_f1_ci95": result["ci"],
            "per_label_f1": {"at_0.5": {k: v["f1"] for k, v in result["at_half"]["per_label"].items()},
                             "tuned": {k: v["f1"] for k, v in result["tuned"]["per_label"].items()}},
        }
    report = {
        "schema_version": SCHEMA_VERSION,
        "split": str(split),
        "n_examples": int(y.shape[0]),
        "labels": labels,
        "val_tuned": bool(val_tuned),
        "thresholds": dict(zip(labels, t.tolist())),
        "metrics_at_0.5": _summary(main["at_half"]),
        "metrics_tuned": _summary(main["tuned"]),
        "mean_f1_ci95": main["ci"],
        "per_label": per_label,
        "baselines": baseline_reports,
        "meta": dict(meta or {}),
        "plots": dict(PLOTS),
    }
    json.dumps(report, allow_nan=False, default=_no_json)  # fail here, before any file exists, if meta is not JSON
    return report


def _no_json(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"meta value {value!r} of type {type(value).__name__} is not JSON-serialisable; pass str/int/float/"
                    "list/dict values.")


# ----------------------------------------------------------------------------------------------------------------------
# Plots
# ----------------------------------------------------------------------------------------------------------------------
def _plot_per_label_f1(report: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)  # no display needed
    import matplotlib.pyplot as plt

    rows = report["per_label"]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(rows) + 2), 4.2), dpi=110)
    tuned_label = "validation-tuned thresholds" if report["val_tuned"] else "given thresholds"
    ax.bar(x - 0.2, [r["f1_at_0.5"] for r in rows], width=0.4, label="threshold 0.5", color="#9bb7d4")
    ax.bar(x + 0.2, [r["f1"] for r in rows], width=0.4, label=tuned_label, color="#1f5a91")
    ax.axhline(report["metrics_tuned"]["macro_f1"], color="#1f5a91", linestyle="--", linewidth=1,
               label=f"macro F1, tuned ({report['metrics_tuned']['macro_f1']:.3f})")
    ax.axhline(report["metrics_at_0.5"]["macro_f1"], color="#9bb7d4", linestyle=":", linewidth=1,
               label=f"macro F1, 0.5 ({report['metrics_at_0.5']['macro_f1']:.3f})")
    ax.set_xticks(x, [r["label"] for r in rows], rotation=45, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1")
    ax.set_title(f"Per-label F1 on {report['split']} ({report['n_examples']} examples)")
    # legend right of the axes so it never hides a bar or a tick label (bbox_inches="tight" makes room)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def _plot_label_counts(report: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = report["per_label"]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(rows) + 2), 4.0), dpi=110)
    bars = ax.bar([r["label"] for r in rows], [r["support"] for r in rows], color="#4c8c4a")
    ax.bar_label(bars, fontsize=7)
    ax.tick_params(axis="x", rotation=45)
    for tick in ax.get_xticklabels():
        tick.set_horizontalalignment("right")
    ax.set_ylabel("examples with the label")
    ax.set_title(f"Label counts (support) in {report['split']} ({report['n_examples']} examples)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------------------------------------
def _f(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def _md_table(header: list[str], rows: list[list[Any]]) -> list[str]:
    def cell(value: Any) -> str:
        return _f(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def render_markdown(report: Mapping[str, Any]) -> str:
    """report.md: the same numbers as report.json (4 decimals), readable on the Hub, plots linked by relative path."""
    tuned_name = "validation-tuned thresholds" if report["val_tuned"] else "given thresholds"
    lines = [f"# Evaluation report: {report['split']} split", ""]
    meta = report.get("meta") or {}
    if meta:
        lines += [f"- **{key}**: {json.dumps(value) if isinstance(value, (dict, list)) else value}"
                  for key, value in meta.items()]
        lines.append("")
    lines += [f"{report['n_examples']} examples, {len(report['labels'])} labels. A label is predicted when its "
              f"probability is >= its threshold. Macro F1 is the mean of the per-label F1 scores; precision, recall "
              f"and F1 with no predicted or no true positives count as 0. "
              + ("Thresholds were tuned per label on the validation split, never on this one."
                 if report["val_tuned"] else "Thresholds were given, not tuned on validation."), ""]
    lines += ["## Metrics", ""]
    lines += _md_table(["Metric", "Threshold 0.5", tuned_name.capitalize()],
                       [[METRIC_NAMES[k], report["metrics_at_0.5"][k], report["metrics_tuned"][k]]
                        for k in SUMMARY_METRICS])
    ci = report["mean_f1_ci95"]
    lines += ["", f"95% bootstrap interval of the macro F1 ({BOOTSTRAP_RESAMPLES} resamples of the examples): "
              f"{_f(ci['at_0.5'][0])} to {_f(ci['at_0.5'][1])} at 0.5, {_f(ci['tuned'][0])} to {_f(ci['tuned'][1])} "
              f"with {tuned_name}.", ""]
    if report["baselines"]:
        lines += ["## Baselines (same split)", "",
                  "Each baseline has its own thresholds, tuned on validation with the same protocol.", ""]
        rows = [["**this model**", report["metrics_at_0.5"]["macro_f1"], report["metrics_tuned"]["macro_f1"],
                 f"{_f(ci['tuned'][0])} to {_f(ci['tuned'][1])}", report["metrics_tuned"]["micro_f1"],
                 report["metrics_tuned"]["subset_accuracy"]]]
        for name, b in report["baselines"].items():
            b_ci = b["mean_f1_ci95"]["tuned"]
            rows.append([name, b["metrics_at_0.5"]["macro_f1"], b["metrics_tuned"]["macro_f1"],
                         f"{_f(b_ci[0])} to {_f(b_ci[1])}", b["metrics_tuned"]["micro_f1"],
                         b["metrics_tuned"]["subset_accuracy"]])
        lines += _md_table(["Model", "Macro F1 at 0.5", "Macro F1 tuned", "95% interval (tuned)", "Micro F1 tuned",
                            "Subset accuracy tuned"], rows)
        lines.append("")
    lines += ["## Per label", ""]
    lines += _md_table(
        ["Label", "Support", "Threshold", "Precision", "Recall", "F1", "Precision at 0.5", "Recall at 0.5", "F1 at 0.5"],
        [[r["label"], r["support"], f"{r['threshold']:g}", r["precision"], r["recall"], r["f1"], r["precision_at_0.5"],
          r["recall_at_0.5"], r["f1_at_0.5"]] for r in report["per_label"]])
    lines += ["", "## Plots", "",
              f"![Per-label F1 at 0.5 and with {tuned_name}]({report['plots']['per_label_f1']})", "",
              f"![Label counts in the {report['split']} split]({report['plots']['label_counts']})", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------------------------
def write_report(
    out_dir: str | Path,
    *,
    label_names: Sequence[str],
    split: str,
    y_true: np.ndarray,
    probs: np.ndarray,
    thresholds: float | Sequence[float] | np.ndarray,
    val_tuned: bool,
    baselines: Mapping[str, Mapping[str, Any]] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Compute the report and write report.json, report.md and the PNG plots into `out_dir`; return the report dict.

    Args:
        out_dir: folder (created if needed); other files in it are left alone.
        label_names: `L` names in column order; split: the split's name, e.g. "test".
        y_true: multi-hot `[n, L]`; probs: the model's probabilities `[n, L]` on the same rows.
        thresholds: the per-label thresholds (tuned on validation: `val_tuned=True`), or one float.
        baselines: `{name: {"probs": [n, L] on this split, "thresholds": [L] tuned on validation (default 0.5)}}`.
        meta: provenance stored as given under "meta" (model id, data, command, date, machine, ...).

    Everything is computed and rendered into a temporary folder next to `out_dir` first; the files are then moved into
    place, so an error leaves no half-written report.
    """
    report = build_report(label_names=label_names, split=split, y_true=y_true, probs=probs, thresholds=thresholds,
                          val_tuned=val_tuned, baselines=baselines, meta=meta)
    out = Path(out_dir).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{out.name}.report-", dir=out.parent))
    try:
        (temporary / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False, default=_no_json) + "\n",
                                               encoding="utf-8")
        (temporary / "report.md").write_text(render_markdown(report), encoding="utf-8")
        _plot_per_label_f1(report, temporary / PLOTS["per_label_f1"])
        _plot_label_counts(report, temporary / PLOTS["label_counts"])
        out.mkdir(parents=True, exist_ok=True)
        # plots first and report.json last: a reader that sees the new report.json finds its plots already there
        for name in (PLOTS["per_label_f1"], PLOTS["label_counts"], "report.md", "report.json"):
            os.replace(temporary / name, out / name)  # same file system: atomic per file
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return json.loads(json.dumps(report, default=_no_json))
