"""Issue 16's bad inputs to `data build`, one regression test each, plus the crash-safety pieces of the build: --out
checked before any work, stale temporary folders (only the tool's own) removed, an interrupted swap undone, and the
embedding cache growing in shards. The encoder is replaced by a seeded stand-in where the test is about what happens
before or around embedding, so this file needs no model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import emo_hf.data.builder as builder
from emo_hf.data import embedding as embedding_module
from emo_hf.data.builder import build_dataset, format_summary
from emo_hf.data.loading import load_goemotions, load_user_data
from emo_hf.data.staging import MARKER, clean_stale, make_old, make_temporary, old_prefix, temporary_prefix
from emo_hf.labels import GOEMOTIONS_LABELS

from goemotions_path import SKIP_REASON, goemotions_dir, write_goemotions_slice


def fake_embed(texts, **kwargs):
    """Seeded 8-dim vectors per text (what the builder needs; no model)."""
    return np.stack([np.random.default_rng(abs(hash(t)) % 2**32).random(8, dtype=np.float32) for t in texts])


def no_embedding(*args, **kwargs):
    raise AssertionError("embedding started although the input is bad")


@pytest.fixture
def real_slice(tmp_path):
    if goemotions_dir() is None:
        pytest.skip(SKIP_REASON)
    return write_goemotions_slice(tmp_path / "go", 300, 50, 50)


def goemotions_folder(folder: Path, train: list[str], dev=("what a joy\t17\td1",), test=("ugh, gross\t11\tx1",)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labels.txt").write_text("\n".join(GOEMOTIONS_LABELS) + "\n", encoding="utf-8")
    for name, lines in (("train.tsv", train), ("dev.tsv", dev), ("test.tsv", test)):
        (folder / name).write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return folder


# --- the bad inputs ------------------------------------------------------------------------------------------


def test_a_stray_quote_in_real_train_tsv_is_refused_naming_file_and_line(real_slice, tmp_path, monkeypatch):
    """The issue: a `"` at the start of one line merged 75 lines into one text and the build exited 0."""
    lines = (real_slice / "train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    assert not lines[99].startswith('"')
    lines[99] = '"' + lines[99]
    (real_slice / "train.tsv").write_text("".join(lines), encoding="utf-8")
    with pytest.raises(ValueError, match=r"train\.tsv: line 100: .*stray|train\.tsv: line 100: malformed TSV quoting"):
        load_goemotions(real_slice)
    monkeypatch.setattr(builder, "embed_texts", no_embedding)
    with pytest.raises(ValueError, match=r"train\.tsv: line 100"):
        build_dataset(real_slice, tmp_path / "out", show_progress=False)
    assert not (tmp_path / "out").exists()


def test_the_real_slice_reads_every_line(real_slice):
    ds = load_goemotions(real_slice)
    assert {s: ds[s].num_rows for s in ds} == {"train": 300, "validation": 50, "test": 50}


@pytest.mark.parametrize("empty", ["test.tsv", "train.tsv", "dev.tsv"])
def test_an_empty_goemotions_file_is_refused_before_any_work(empty, tmp_path, monkeypatch):
    folder = goemotions_folder(tmp_path / "go", ["I am so scared\t14\tt1", "ok then\t27\tt2", "wow\t26\tt3"])
    (folder / empty).write_text("", encoding="utf-8")
    monkeypatch.setattr(builder, "embed_texts", no_embedding)
    with pytest.raises(ValueError, match=rf"{empty.replace('.', '[.]')} has no rows: every split needs rows"):
        build_dataset(folder, tmp_path / "out", balance="none", show_progress=False)
    assert sorted(os.listdir(tmp_path)) == ["go"]


def test_an_empty_split_of_a_dataset_dict_is_refused_before_embedding(tmp_path, monkeypatch):
    ds = load_goemotions(goemotions_folder(tmp_path / "go", ["I am so scared\t14\tt1", "ok\t14\tt2"]), labels=["fear"])
    ds["test"] = ds["test"].select([])
    monkeypatch.setattr(builder, "embed_texts", no_embedding)
    with pytest.raises(ValueError, match=r"The 'test' split\(s\) of a DatasetDict given in Python have no rows"):
        build_dataset(ds, tmp_path / "out", balance="none", show_progress=False)


def user_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("text,feelings\n" + "".join(f'"{t}","{f}"\n' for t, f in rows), encoding="utf-8")
    return path


def test_an_unknown_label_name_is_refused_with_count_and_line_unless_dropped(tmp_path, monkeypatch, capsys):
    rows = [(f"message {i}", "joy" if i % 2 else "anger") for i in range(40)]
    rows[7] = ("message 7", "angr")
    rows[12] = ("message 12", "joy,angr")
    path = user_csv(tmp_path / "mine.csv", rows)
    with pytest.raises(ValueError, match=r"mine\.csv: 2 row\(s\) carry label name\(s\) outside the label set \['joy', "
                                         r"'anger'\]: 'angr' x2 \(first at row 7 \(line 9\)\).*--drop-unknown-labels"):
        load_user_data(path, label_column="feelings", labels=["joy", "anger"])
    ds = load_user_data(path, label_column="feelings", labels=["joy", "anger"], drop_unknown_labels=True)
    by_text = {r["text"]: r["labels"] for s in ds for r in ds[s]}
    assert by_text["message 7"] == [0.0, 0.0] and by_text["message 12"] == [1.0, 0.0]

    from emo_hf.cli import main

    monkeypatch.setattr(builder, "embed_texts", fake_embed)
    argv = ["data", "build", "--source", str(path), "--out", str(tmp_path / "out"), "--label-column", "feelings",
            "--labels", "joy,anger", "--target-per-label", "20", "--no-progress"]
    assert main(argv) == 2
    assert "'angr' x2" in capsys.readouterr().err and not (tmp_path / "out").exists()
    assert main(argv + ["--drop-unknown-labels"]) == 0
    assert sum(json.loads((tmp_path / "out" / "build_info.json").read_text())["rows"]["raw"].values()) == 40


def test_a_label_with_one_example_is_refused_for_ismote_and_warned_for_random(tmp_path, monkeypatch):
    lines = ["text,feelings,split"] + [f"message {i},{'joy' if i % 2 else 'anger'},{['train', 'validation', 'test'][i % 3]}"
                                       for i in range(40)]
    lines[1 + 6] = "message 6,fear,train"  # one fear example, in train
    path = tmp_path / "mine.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    user_data = {"label_column": "feelings", "split_column": "split"}
    monkeypatch.setattr(builder, "embed_texts", no_embedding)
    for balance in ("ismote", "smote"):
        with pytest.raises(ValueError, match=rf"--balance {balance} needs at least k\+1 = 6 train positives .*'fear' \(1\)"
                                             r".*--balance random or --balance none"):
            build_dataset(path, tmp_path / "out", balance=balance, user_data=user_data, show_progress=False)
    assert not (tmp_path / "out").exists()
    monkeypatch.setattr(builder, "embed_texts", fake_embed)
    info = build_dataset(path, tmp_path / "out", balance="random", target_per_label=20, user_data=user_data,
                         show_progress=False)
    assert info["counts"]["train_before"]["fear"] == 1 and info["counts"]["train_after"]["fear"] >= 20
    # fear: 19 synthetic rows per real example is warned; joy (7 -> 20) and anger (6 -> 20) are not
    assert len(info["warnings"]) == 1 and "'fear' has 1 train positive(s)" in info["warnings"][0]
    assert "19 synthetic rows per real example" in info["warnings"][0]
    assert "warning: label 'fear' has 1 train positive(s)" in format_summary(info)


def test_an_empty_jsonl_is_a_clear_error(tmp_path):
    from emo_hf.cli import main

    path = tmp_path / "mine.jsonl"
    for content in ("", "\n\n"):
        path.write_text(content, encoding="utf-8")
        with pytest.raises(ValueError, match=r"mine\.jsonl holds no JSON records"):
            load_user_data(path)
    assert main(["data", "build", "--source", str(path), "--out", str(tmp_path / "out")]) == 2


def test_user_file_encodings_and_missing_keys(tmp_path):
    rows = "text,labels\n" + "".join(f"t{i},{'joy' if i % 2 else 'anger'}\n" for i in range(12))
    for name, data in (("bom.csv", b"\xef\xbb\xbf" + rows.encode()), ("utf16.csv", rows.encode("utf-16"))):
        ds = load_user_data(_write(tmp_path / name, data))
        assert sum(ds[s].num_rows for s in ds) == 12 and ds["train"].features["emotions"].feature.names == ["anger", "joy"]
    _write(tmp_path / "latin1.csv", "text,labels\ncafé,joy\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.csv: line 2 \(byte offset 15\) is not valid UTF-8.*iconv"):
        load_user_data(tmp_path / "latin1.csv")
    _write(tmp_path / "keys.jsonl", b'{"text": "a", "labels": ["joy"]}\n{"text": "b"}\n{"text": "c", "labels": []}\n')
    with pytest.raises(ValueError, match=r"keys\.jsonl: line 2 has no 'labels' key \(1 record\(s\) lack it\)"):
        load_user_data(tmp_path / "keys.jsonl")
    _write(tmp_path / "list.jsonl", b'{"text": "a", "labels": ["joy"]}\n["b", "joy"]\n')
    with pytest.raises(ValueError, match=r"list\.jsonl: line 2 holds a JSON list, not an object"):
        load_user_data(tmp_path / "list.jsonl")
    _write(tmp_path / "header.csv", b"text,labels,text\na,joy,b\n")
    with pytest.raises(ValueError, match=r"header\.csv: line 1: the header repeats column\(s\) \['text'\]"):
        load_user_data(tmp_path / "header.csv")
    _write(tmp_path / "only-header.csv", b"text,labels\n")
    with pytest.raises(ValueError, match=r"only-header\.csv has a header \(text, labels\) but no rows"):
        load_user_data(tmp_path / "only-header.csv")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- crash safety of the build ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["file", "foreign folder", "under a file"])
def test_out_is_checked_before_any_work(kind, tmp_path, monkeypatch):
    folder = goemotions_folder(tmp_path / "go", ["I am so scared\t14\tt1", "ok then\t27\tt2", "wow\t26\tt3"])
    out = tmp_path / "out"
    if kind == "file":
        out.write_text("mine")
    elif kind == "foreign folder":
        out.mkdir()
        (out / "notes.txt").write_text("keep me")
    else:
        out.write_text("mine")
        out = out / "sub" / "data"
    monkeypatch.setattr(builder, "load_goemotions", no_embedding)  # not even loading starts
    with pytest.raises(FileExistsError, match=r"choose another --out"):
        build_dataset(folder, out, show_progress=False)
    assert sorted(os.listdir(tmp_path)) == ["go", "out"]
    assert (tmp_path / "out" / "notes.txt").read_text() == "keep me" if kind == "foreign folder" else True


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_stale_temporary_folders_of_the_tool_are_removed_and_nothing_else(tmp_path, monkeypatch):
    out = tmp_path / "data"
    stale = make_temporary(out)
    (stale / "data" / "raw").mkdir(parents=True)
    (stale / "data" / "raw" / "train.parquet").write_bytes(b"half written")
    marker = json.loads((stale / MARKER).read_text())
    (stale / MARKER).write_text(json.dumps({**marker, "pid": dead_pid()}))
    running = make_temporary(out)  # our own pid: a build still running (here: this test) is left alone
    foreign = tmp_path / f"{temporary_prefix(out)}by-hand"  # the prefix without the marker: not provably ours
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    other_out = make_temporary(tmp_path / "other")
    (other_out / MARKER).write_text(json.dumps({**marker, "pid": dead_pid(), "out": str(tmp_path / "other")}))
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        alive = make_temporary(out)
        (alive / MARKER).write_text(json.dumps({**marker, "pid": sleeper.pid}))
        assert clean_stale(out) == [stale]
        assert running.is_dir() and foreign.is_dir() and other_out.is_dir() and alive.is_dir()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert clean_stale(out) == [alive]  # its process is gone now

    folder = goemotions_folder(tmp_path / "go", ["I am so scared\t14\tt1", "ok then\t27\tt2", "wow\t26\tt3"])
    again = make_temporary(out)
    (again / MARKER).write_text(json.dumps({**marker, "pid": dead_pid()}))
    monkeypatch.setattr(builder, "embed_texts", fake_embed)
    build_dataset(folder, out, labels=["fear"], balance="none", show_progress=False)
    assert not again.exists() and (out / "build_info.json").is_file() and not (out / MARKER).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["data", "go", running.name, foreign.name, other_out.name])


def test_a_kill_between_the_two_renames_keeps_the_previous_build(tmp_path, monkeypatch):
    folder = goemotions_folder(tmp_path / "go", ["I am so scared\t14\tt1", "ok then\t27\tt2", "wow\t26\tt3"])
    out = tmp_path / "data"
    monkeypatch.setattr(builder, "embed_texts", fake_embed)
    build_dataset(folder, out, labels=["fear"], balance="none", show_progress=False)
    before = (out / "build_info.json").read_bytes()
    old = make_old(out)  # what move_into_place does, killed after its first rename
    os.replace(out, old / out.name)
    marker = json.loads((old / MARKER).read_text())
    (old / MARKER).write_text(json.dumps({**marker, "pid": dead_pid()}))
    clean_stale(out)
    assert (out / "build_info.json").read_bytes() == before and not old.exists()
    assert not list(tmp_path.glob(f"{old_prefix(out)}*"))


class CountingModel:
    """A stand-in SentenceTransformer: records what it encodes; fails on the `fail_on`-th call (a kill)."""

    def __init__(self, fail_on: int | None = None):
        self.calls: list[list[str]] = []
        self.fail_on = fail_on

    def encode(self, texts, **kwargs):
        self.calls.append(list(texts))
        if self.fail_on is not None and len(self.calls) == self.fail_on:
            raise KeyboardInterrupt("killed")
        return np.stack([np.full(4, float(len(t)), dtype=np.float32) for t in texts])


def test_the_embedding_cache_grows_in_shards_and_a_rerun_embeds_only_the_rest(tmp_path, monkeypatch):
    monkeypatch.setenv("EMO_HF_EMBED_SHARD_SIZE", "3")
    texts = [f"text number {i}" for i in range(10)]
    with pytest.raises(KeyboardInterrupt):
        embedding_module.embed_texts(texts, cache_dir=tmp_path, model=CountingModel(fail_on=3), show_progress=False)
    folder = next(tmp_path.iterdir())
    assert len(list(folder.glob("*.npz"))) == 2  # the two finished chunks of 3 texts were kept
    (folder / f".shard-{dead_pid()}-abc.tmp").write_bytes(b"half")  # a kill while writing a shard
    (folder / "notes.tmp").write_bytes(b"not ours")
    model = CountingModel()
    vectors = embedding_module.embed_texts(texts, cache_dir=tmp_path, model=model, show_progress=False)
    assert model.calls == [texts[6:9], texts[9:]]  # only the rest, cut the same way as the first run
    np.testing.assert_array_equal(vectors[:, 0], [len(t) for t in texts])
    assert sorted(p.name for p in folder.iterdir() if not p.name.endswith(".npz")) == ["notes.tmp"]
    assert len(list(folder.glob("*.npz"))) == 4
    monkeypatch.setenv("EMO_HF_EMBED_SHARD_SIZE", "0")
    with pytest.raises(ValueError, match=r"EMO_HF_EMBED_SHARD_SIZE='0' must be a positive number"):
        embedding_module.embed_texts(["new"], cache_dir=tmp_path, model=CountingModel(), show_progress=False)
