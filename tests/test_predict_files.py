"""`emo-hf predict` (emo_hf/predict_files.py) on slices of the REAL GoEmotions test split, with a saved tiny model
(tests/conftest.py::tiny_emo_model_dir): every row equals model.predict, in input order, bad rows kept and flagged;
a killed run resumed equals one run; 2 torchrun processes write the same file as 1."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from goemotions_path import SKIP_REASON, goemotions_dir

from emo_hf.cli import main
from emo_hf.labels import DEFAULT_LABELS

LABELS = list(DEFAULT_LABELS)
ROWS = 300
BAD = {150: "   ", 151: 42, 152: None}  # empty, not a string, missing: in the middle of the file


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread here and in the subprocesses (torchrun sets OMP_NUM_THREADS=1 for its processes too):
    the same float summation order everywhere, so outputs compare byte for byte, and a tiny model on a 2-core
    machine shared by other jobs is ~30x faster than with 2 oversubscribed threads."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def env() -> dict:
    # The checkout's emo_hf first: a subprocess started from a temp folder would otherwise import an installed copy.
    repo = str(Path(__file__).resolve().parent.parent)
    return dict(os.environ, OMP_NUM_THREADS="1",
                PYTHONPATH=os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p))


@pytest.fixture(scope="module")
def model(tiny_emo_model_dir):
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(tiny_emo_model_dir))


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """The first ROWS rows of the real test split (text, gold label ids, comment id)."""
    if goemotions_dir() is None:
        pytest.skip(SKIP_REASON)
    with open(goemotions_dir() / "test.tsv", encoding="utf-8", newline="") as handle:
        rows = [row for _, row in zip(range(ROWS), csv.reader(handle, delimiter="\t"))]
    return pd.DataFrame(rows, columns=["text", "gold", "id"])


def write_input(frame: pd.DataFrame, path: Path) -> Path:
    """`frame` with the BAD rows, as CSV (strings only: the empty text, and "" for the others), JSONL or parquet."""
    frame = frame.astype(object).copy()
    for row, value in BAD.items():
        frame.at[row, "text"] = value
    if path.suffix == ".csv":
        frame["text"] = ["" if v is None else str(v) if not isinstance(v, str) else v for v in frame["text"]]
        frame.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(record) + "\n" for record in frame.to_dict("records")))
    else:
        frame["text"] = [v if v is None or isinstance(v, str) else str(v) for v in frame["text"]]
        frame.to_parquet(path, index=False)
    return path


def read_output(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        out = pd.read_csv(path, dtype={"text": str, "gold": str, "id": str, "labels": str, "error": str},
                          keep_default_na=False, na_values={name: [""] for name in LABELS})
        out["labels"] = [[] if v == "" else v.split(",") for v in out["labels"]]
        return out
    if path.suffix == ".jsonl":
        return pd.DataFrame.from_records([json.loads(line) for line in path.read_text().splitlines()])
    out = pd.read_parquet(path)
    out["labels"] = [None if v is None else list(v) for v in out["labels"]]
    return out


def predict(tmp_path, model_dir, source: Path, out: Path, *extra: str) -> None:
    assert main(["predict", str(model_dir), "--input", str(source), "--output", str(out), "--chunk-rows", "64",
                 "--no-progress", *extra]) == 0


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_every_row_equals_model_predict_in_input_order(tmp_path, frame, model, tiny_emo_model_dir, suffix, capsys):
    source = write_input(frame, tmp_path / f"test{suffix}")
    out = tmp_path / f"pred{suffix}"
    predict(tmp_path, tiny_emo_model_dir, source, out)
    assert f"Wrote {ROWS} rows" in capsys.readouterr().out
    got = read_output(out)
    assert list(got.columns) == ["text", "gold", "id", *LABELS, "labels", "error"]
    assert len(got) == ROWS
    assert got["id"].tolist() == frame["id"].tolist() and got["gold"].tolist() == frame["gold"].tolist()
    good = [i for i in range(ROWS) if i not in BAD]
    assert got["text"].iloc[good].tolist() == frame["text"].iloc[good].tolist()
    expected = model.predict(frame["text"].iloc[good].tolist())
    probabilities = got[LABELS].to_numpy(dtype=float)
    for i, want in zip(good, expected):
        assert got["labels"].iloc[i] == want["labels"], i
        np.testing.assert_allclose(probabilities[i], [want["probabilities"][name] for name in LABELS], atol=1e-5)
    errors = [None if e is None or e == "" or (isinstance(e, float) and np.isnan(e)) else e for e in got["error"]]
    assert [errors[i] for i in good] == [None] * len(good)
    # A CSV cell is always a string ("" for the missing text, "42" a valid text), a parquet column has one type
    not_a_string = "text is not a string (int '42')" if suffix == ".jsonl" else None
    missing = "empty text" if suffix == ".csv" else "missing text"
    assert [errors[i] for i in sorted(BAD)] == ["empty text", not_a_string, missing]
    flagged = [i for i in sorted(BAD) if errors[i]]
    assert np.isnan(probabilities[flagged]).all() and all(not got["labels"].iloc[i] for i in flagged)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # parts and temp files gone


def test_a_killed_run_resumed_equals_one_run(tmp_path, frame, tiny_emo_model_dir, capsys):
    source = write_input(frame, tmp_path / "test.csv")
    once = tmp_path / "once.csv"
    predict(tmp_path, tiny_emo_model_dir, source, once, "--chunk-rows", "32")
    out = tmp_path / "resumed.csv"
    # A real kill -9 in the middle: after the 3rd finished chunk, the process kills itself.
    script = tmp_path / "kill.py"
    script.write_text(
        "import os, signal, sys\n"
        "import emo_hf.predict_files as p\n"
        "write, done = p._write_part, []\n"
        "def write_then_die(table, part):\n"
        "    write(table, part)\n"
        "    done.append(part)\n"
        "    if len(done) == 3:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "p._write_part = write_then_die\n"
        "from emo_hf.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    run = subprocess.run([sys.executable, str(script), "predict", str(tiny_emo_model_dir), "--input", str(source),
                          "--output", str(out), "--chunk-rows", "32", "--no-progress"],
                         capture_output=True, text=True, timeout=300, env=env())
    assert run.returncode == -9, run.stderr[-2000:]
    assert not out.exists()  # nothing half-written
    parts = tmp_path / ".resumed.csv.emo-hf-parts"
    assert len(list(parts.glob("chunk-*.parquet"))) == 3
    # Different settings are refused rather than mixed into the same output.
    assert main(["predict", str(tiny_emo_model_dir), "--input", str(source), "--output", str(out), "--chunk-rows",
                 "32", "--threshold-shift", "0.1", "--resume", "--no-progress"]) == 2
    assert "thresholds" in capsys.readouterr().err
    predict(tmp_path, tiny_emo_model_dir, source, out, "--chunk-rows", "32", "--resume")
    assert "3 chunk(s) resumed" in capsys.readouterr().out
    assert out.read_bytes() == once.read_bytes()
    assert not parts.exists()


def test_two_torchrun_processes_write_the_same_file_as_one(tmp_path, frame, tiny_emo_model_dir):
    source = write_input(frame, tmp_path / "test.parquet")
    once = tmp_path / "once.jsonl"
    predict(tmp_path, tiny_emo_model_dir, source, once)
    out = tmp_path / "two.jsonl"
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "emo_hf", "predict", str(tiny_emo_model_dir), "--input", str(source), "--output",
                          str(out), "--chunk-rows", "64", "--no-progress"],
                         capture_output=True, text=True, timeout=300, env=env())
    assert run.returncode == 0, run.stderr[-3000:]
    assert out.read_bytes() == once.read_bytes()
    assert run.stdout.count("Wrote 300 rows") == 1  # one summary, from process 0
    assert "2 processes" in run.stdout


def test_datasets_folder_split_and_refusals(tmp_path, frame, tiny_emo_model_dir, capsys):
    from datasets import Dataset, DatasetDict

    DatasetDict({"test": Dataset.from_pandas(frame.iloc[:40])}).save_to_disk(str(tmp_path / "ds"))
    out = tmp_path / "ds.parquet"
    predict(tmp_path, tiny_emo_model_dir, tmp_path / "ds", out, "--split", "test")
    assert pd.read_parquet(out)["id"].tolist() == frame["id"].iloc[:40].tolist()
    capsys.readouterr()
    refused = [  # (arguments, what the one-line error must say)
        (["--input", str(tmp_path / "ds"), "--output", str(tmp_path / "x.csv")], "--split test"),
        (["--input", str(out), "--output", str(out), "--overwrite"], "is the input file"),
        (["--input", str(out), "--output", str(tmp_path / "y.csv"), "--text-column", "body"], "--text-column"),
        (["--input", str(out), "--output", str(tmp_path / "z.csv")], "--column-prefix pred_"),
        (["--input", str(tmp_path / "ds"), "--split", "test", "--output", str(out)], "--overwrite"),
        (["--input", str(tmp_path / "nothing.csv"), "--output", str(tmp_path / "n.csv")], "does not exist"),
    ]
    for arguments, message in refused:
        assert main(["predict", str(tiny_emo_model_dir), "--no-progress", *arguments]) == 2, arguments
        assert message in capsys.readouterr().err, arguments
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "ds.parquet"]  # nothing left behind
