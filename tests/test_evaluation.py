"""emo_hf.evaluation.write_report: report.json / report.md / PNGs, consistent numbers, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from emo_hf.evaluation import REPORT_FILES, write_report
from emo_hf.metrics import SUMMARY_METRICS, bootstrap_mean_f1_ci, multilabel_metrics, tune_thresholds

LABELS = ["fear", "joy", "anger", "love"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Multi-hot truth and scores of a imperfect classifier whose best thresholds differ from 0.5 per label."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, len(LABELS))) < np.array([0.05, 0.2, 0.1, 0.3])).astype(np.int8)
    shift = np.array([-0.25, 0.0, 0.1, 0.2])  # under- and over-confident labels
    probs = np.clip(0.45 * y + 0.55 * rng.random(y.shape) + shift * rng.random(y.shape), 0.0, 1.0)
    return y, probs


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, dict, dict]:
    y_val, p_val = _split(800, 0)
    y_test, p_test = _split(700, 1)
    thresholds = tune_thresholds(y_val, p_val)
    rng = np.random.default_rng(2)
    baseline_val, baseline_test = np.clip(p_val + rng.normal(0, 0.2, p_val.shape), 0, 1), \
        np.clip(p_test + rng.normal(0, 0.2, p_test.shape), 0, 1)
    out = tmp_path_factory.mktemp("eval") / "report"
    inputs = {"y_test": y_test, "p_test": p_test, "thresholds": thresholds,
              "baseline_test": baseline_test, "baseline_thresholds": tune_thresholds(y_val, baseline_val)}
    report = write_report(out, label_names=LABELS, split="test", y_true=y_test, probs=p_test, thresholds=thresholds,
                          val_tuned=True,
                          baselines={"noisy": {"probs": baseline_test, "thresholds": inputs["baseline_thresholds"]}},
                          meta={"model": "unit-test", "n_val": np.int64(800), "data": Path("/data")})
    return out, report, inputs


def test_files_written_and_json_equals_returned_dict(written):
    out, report, _ = written
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES)
    for name in report["plots"].values():
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE
        assert (out / name).stat().st_size > 5000  # an actual chart, not an empty canvas
    assert json.loads((out / "report.json").read_text()) == report
    assert not list(out.parent.glob(".report.report-*"))  # temporary folder cleaned up
    assert report["meta"] == {"model": "unit-test", "n_val": 800, "data": "/data"}


def test_schema_keys(written):
    _, report, _ = written
    assert {"schema_version", "split", "n_examples", "labels", "val_tuned", "thresholds", "metrics_at_0.5",
            "metrics_tuned", "mean_f1_ci95", "per_label", "baselines", "meta", "plots"} == set(report)
    assert set(report["metrics_at_0.5"]) == set(report["metrics_tuned"]) == set(SUMMARY_METRICS)
    assert set(report["mean_f1_ci95"]) == {"at_0.5", "tuned"}
    assert [row["label"] for row in report["per_label"]] == report["labels"] == LABELS
    assert set(report["baselines"]["noisy"]) == {"thresholds", "metrics_at_0.5", "metrics_tuned", "mean_f1_ci95",
                                                 "per_label_f1"}


def test_numbers_are_consistent(written):
    _, report, inputs = written
    y, p, t = inputs["y_test"], inputs["p_test"], inputs["thresholds"]
    tuned, at_half = multilabel_metrics(y, p, t, LABELS), multilabel_metrics(y, p, 0.5, LABELS)
    assert report["n_examples"] == len(y)
    assert report["thresholds"] == dict(zip(LABELS, t.tolist()))
    for key in SUMMARY_METRICS:
        assert report["metrics_tuned"][key] == tuned[key]
        assert report["metrics_at_0.5"][key] == at_half[key]
    # the per-label table agrees with the summary and the truth
    rows = report["per_label"]
    assert np.mean([r["f1"] for r in rows]) == pytest.approx(report["metrics_tuned"]["macro_f1"])
    assert np.mean([r["f1_at_0.5"] for r in rows]) == pytest.approx(report["metrics_at_0.5"]["macro_f1"])
    assert [r["support"] for r in rows] == y.sum(axis=0).tolist()
    assert [r["threshold"] for r in rows] == t.tolist()
    # the thresholds really differ from 0.5 here, so the two blocks are not trivially equal
    assert report["metrics_tuned"]["macro_f1"] != report["metrics_at_0.5"]["macro_f1"]
    low, high = report["mean_f1_ci95"]["tuned"]
    assert low < report["metrics_tuned"]["macro_f1"] < high
    assert [low, high] == list(bootstrap_mean_f1_ci(y, (p >= t).astype(int), n_resamples=1000, seed=0))
    low, high = report["mean_f1_ci95"]["at_0.5"]
    assert low < report["metrics_at_0.5"]["macro_f1"] < high
    baseline = report["baselines"]["noisy"]
    expected = multilabel_metrics(y, inputs["baseline_test"], inputs["baseline_thresholds"], LABELS)
    assert baseline["metrics_tuned"]["macro_f1"] == expected["macro_f1"]
    assert baseline["thresholds"] == dict(zip(LABELS, inputs["baseline_thresholds"].tolist()))


def test_markdown_shows_the_same_numbers_and_embeds_the_plots(written):
    out, report, _ = written
    text = (out / "report.md").read_text()
    assert f"| Macro F1 (mean per-label F1) | {report['metrics_at_0.5']['macro_f1']:.4f} | " \
           f"{report['metrics_tuned']['macro_f1']:.4f} |" in text
    fear = report["per_label"][0]
    assert f"| fear | {fear['support']} | {fear['threshold']:g} | {fear['precision']:.4f} |" in text
    assert f"| noisy | {report['baselines']['noisy']['metrics_at_0.5']['macro_f1']:.4f} |" in text
    low, high = report["mean_f1_ci95"]["tuned"]
    assert f"{low:.4f} to {high:.4f}" in text
    for name in report["plots"].values():
        assert f"]({name})" in text
    assert "{" not in text.split("## Metrics")[1]  # no template or dict leftovers in the body


def test_failure_leaves_the_previous_report_untouched(written, tmp_path):
    out, report, inputs = written
    before = {name: (out / name).read_bytes() for name in REPORT_FILES}
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        write_report(out, label_names=LABELS, split="test", y_true=inputs["y_test"], probs=inputs["p_test"],
                     thresholds=0.5, val_tuned=False, meta={"bad": object()})
    with pytest.raises(ValueError, match="'probs'"):
        write_report(out, label_names=LABELS, split="test", y_true=inputs["y_test"], probs=inputs["p_test"],
                     thresholds=0.5, val_tuned=False, baselines={"x": {"thresholds": 0.5}})
    assert {name: (out / name).read_bytes() for name in REPORT_FILES} == before
    with pytest.raises(ValueError, match="empty"):
        write_report(tmp_path / "empty", label_names=LABELS, split="test", y_true=np.zeros((0, 4)),
                     probs=np.zeros((0, 4)), thresholds=0.5, val_tuned=False)
    assert not (tmp_path / "empty").exists()
