"""`emo-hf ablate` end to end on a GoEmotions-shaped slice of the real files (400 train / 100 dev / 100 test rows) with
the tiny random Mistral: three variants (text focal, text BCE, embedding ISMOTE) tabulated, then a second call skips
them. (400 train rows: the first 300 hold only 4 fear and 4 disgust positives, fewer than the k+1 = 6 that
`data build --balance ismote` requires.)"""

from __future__ import annotations

import json

import pytest

from emo_hf.cli import main

ONLY = ["text-none", "text-bce", "embedding-ismote"]


@pytest.fixture(scope="module")
def slice_source(tmp_path_factory):
    from goemotions_path import SKIP_REASON, goemotions_dir, write_goemotions_slice

    if goemotions_dir() is None:
        pytest.skip(SKIP_REASON)
    return write_goemotions_slice(tmp_path_factory.mktemp("ablation-source"), 400, 100, 100)


def _ablate(source, out):
    return main(["ablate", "--source", str(source), "--out", str(out), "--preset", "tiny-random", "--epochs", "1",
                 "--target-per-label", "20", "--only", ",".join(ONLY), "--no-progress"])


def test_ablate_tabulates_the_variants_and_skips_finished_ones(slice_source, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EMO_HF_CACHE", str(tmp_path / "cache"))  # embeddings (and the tiny backbone) under tmp
    out = tmp_path / "ablation"
    assert _ablate(slice_source, out) == 0
    first = capsys.readouterr().out
    for name in ONLY:
        assert f"{name}: start" in first and f"{name}: end" in first

    summary = json.loads((out / "ablation.json").read_text())
    rows = {row["name"]: row for row in summary["variants"]}
    assert list(rows) == ONLY
    for row in rows.values():
        for key in ("val_macro_f1_at_0.5", "val_macro_f1_tuned", "test_macro_f1_at_0.5", "test_macro_f1_tuned",
                    "test_micro_f1_tuned"):
            assert 0.0 <= row[key] <= 1.0, (row["name"], key, row[key])
        assert row["train_rows"] > 0 and row["train_seconds"] >= 0
    assert rows["text-none"]["mode"] == "text" and rows["embedding-ismote"]["mode"] == "embedding"
    assert rows["text-bce"]["loss"] == "BCE" and rows["text-none"]["loss"].startswith("focal")
    assert rows["text-none"]["train_rows"] == 400  # every row kept; the others drop half of the no-emotion rows
    assert (out / "data-ismote" / "build_info.json").is_file() and (out / "data-none" / "build_info.json").is_file()
    assert summary["command"].startswith("emo-hf ablate") and summary["machine"] and summary["date"]
    table = (out / "ablation.md").read_text()
    assert all(f"| {name} |" in table for name in ONLY) and "emo-hf ablate" in table
    assert (out / "ablation.png").read_bytes()[:4] == b"\x89PNG"

    # a second call trains nothing: every variant is reported as done and its report is untouched
    stamps = {name: (out / name / "report.json").stat().st_mtime_ns for name in ONLY}
    assert _ablate(slice_source, out) == 0
    second = capsys.readouterr().out
    assert second.count("done already") == 3 and ": start" not in second
    assert {name: (out / name / "report.json").stat().st_mtime_ns for name in ONLY} == stamps
    assert [r["name"] for r in json.loads((out / "ablation.json").read_text())["variants"]] == ONLY

    # other shared settings on the same folder are refused (the table would mix runs)
    assert main(["ablate", "--source", str(slice_source), "--out", str(out), "--preset", "tiny-random",
                 "--epochs", "2", "--only", "text-none"]) == 2
    assert "other settings" in capsys.readouterr().err
