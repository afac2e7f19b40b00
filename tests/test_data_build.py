"""The dataset builder end to end: folder layout, load_dataset in a fresh process, determinism, atomic writes,
the embedding cache, the leakage refusal, the CLI, the Hub push, and the real GoEmotions build."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emo_hf.data import embedding as embedding_module
from emo_hf.data import builder as builder_module
from emo_hf.data.builder import build_dataset
from emo_hf.data.leakage import LeakageError
from emo_hf.labels import DEFAULT_LABELS, GOEMOTIONS_LABELS

from goemotions_path import REPO, SKIP_REASON, goemotions_dir

LABELS = ["fear", "love", "joy", "admiration"]
def parquets(out: Path) -> list[str]:
    """The six parquet files of a build, as build_info.json names them (data/{config}/{split}-{fingerprint}.parquet)."""
    files = json.loads((out / "build_info.json").read_text())["files"]
    return [files[c][s] for c in ("raw", "balanced") for s in ("train", "validation", "test")]


def parquet(out: Path, config: str, split: str) -> Path:
    return out / json.loads((out / "build_info.json").read_text())["files"][config][split]
WORDS = "great awful scary funny love hate wow meh sad happy angry confused excited gross hope dark night".split()


def write_tiny_goemotions(folder: Path, n_train: int = 80) -> Path:
    """A seeded GoEmotions-shaped folder (official format) with a few hundred words of fake comments."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labels.txt").write_text("\n".join(GOEMOTIONS_LABELS) + "\n", encoding="utf-8")
    pool = [14, 18, 17, 0, 27, 25]  # fear, love, joy, admiration, neutral, sadness
    for file_name, n in (("train.tsv", n_train), ("dev.tsv", 16), ("test.tsv", 16)):
        with open(folder / file_name, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, delimiter="\t")
            for i in range(n):
                ids = rng.choice(pool, size=1 + int(i % 5 == 0), replace=False, p=[0.08, 0.17, 0.15, 0.2, 0.3, 0.1])
                words = " ".join(rng.choice(WORDS, size=6))
                writer.writerow([f"{file_name[:-4]} {i}: {words}", ",".join(map(str, ids)), f"{file_name[:-4]}-{i}"])
    return folder


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory):
    return write_tiny_goemotions(tmp_path_factory.mktemp("goemotions-tiny"))


@pytest.fixture(scope="module")
def embed_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("embedding-cache")


@pytest.fixture(scope="module")
def tiny_build(tiny_source, embed_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("builds") / "tiny"
    info = build_dataset(tiny_source, out, labels=LABELS, target_per_label=25, keep_no_emotion=0.5,
                         cache_dir=embed_cache, show_progress=False)
    return out, info


def fresh_python(code: str, tmp_path: Path) -> dict:
    """Run `code` in a new interpreter (nothing shared with this process) and return the JSON it prints last."""
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "hf-datasets-cache"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


LOAD_AND_DESCRIBE = """
import json, sys
import numpy as np
from datasets import load_dataset
out = {out!r}
report = {{}}
for config in ("raw", "balanced"):
    ds = load_dataset(out, config)
    split_report = {{}}
    for split in ds:
        d = ds[split]
        table = d.with_format("arrow")[:]  # column access through Arrow: fast on 40k rows
        labels = np.array(table["labels"].to_pylist(), dtype=np.float32)
        entry = {{"rows": d.num_rows, "columns": d.column_names, "positives": labels.sum(0).astype(int).tolist(),
                 "names": d.features["emotions"].feature.names, "label_dtype": d.features["labels"].feature.dtype,
                 "ids_head": table["id"].to_pylist()[:3]}}
        if "is_synthetic" in d.column_names:
            synthetic = np.array(table["is_synthetic"].to_pylist())
            texts = table["text"].to_pylist()
            entry["synthetic"] = int(synthetic.sum())
            entry["synthetic_text_none"] = sum(t is None for t, s in zip(texts, synthetic) if s)
            entry["embedding_dim"] = len(d[0]["embedding"])
            entry["seed_ids"] = sorted({{s for s in table["seed_id"].to_pylist() if s is not None}})[:5]
        split_report[split] = entry
    report[config] = split_report
print(json.dumps(report))
"""


def test_folder_layout_and_build_info(tiny_build):
    out, info = tiny_build
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == sorted(["README.md", "build_info.json", "label_counts.png", *parquets(out)])
    assert all(name.endswith(f"-{info['fingerprint']}.parquet") for name in parquets(out))
    saved = json.loads((out / "build_info.json").read_text())
    assert saved["labels"] == LABELS and saved["encoder"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert saved["balance"]["method"] == "ismote" and saved["balance"]["target_per_label"] == 25
    assert saved["rows"]["raw"] == {"train": 80, "validation": 16, "test": 16}
    assert all(saved["counts"]["train_after"][n] >= 25 for n in LABELS)
    assert set(saved["seconds"]) >= {"load", "embed", "balance", "write", "total"}
    card = (out / "README.md").read_text()
    assert "config_name: raw" in card and f"path: data/balanced/train-{info['fingerprint']}.parquet" in card
    assert "| fear |" in card and "label_counts.png" in card and "Identical texts across splits" in card
    assert (out / "label_counts.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.parent.glob(".tiny.*"))  # no temporary or old folder of the build left next to OUT


def test_load_dataset_in_a_fresh_process(tiny_build, tmp_path):
    out, info = tiny_build
    report = fresh_python(LOAD_AND_DESCRIBE.format(out=str(out)), tmp_path)
    raw, balanced = report["raw"], report["balanced"]
    assert {s: raw[s]["rows"] for s in raw} == {"train": 80, "validation": 16, "test": 16}
    assert raw["train"]["columns"] == ["id", "text", "labels", "emotions"]
    assert raw["train"]["names"] == LABELS and raw["train"]["label_dtype"] == "float32"
    assert balanced["train"]["columns"] == ["id", "text", "labels", "emotions", "embedding", "is_synthetic", "seed_id", "neighbor_id"]
    assert balanced["train"]["names"] == LABELS and balanced["train"]["embedding_dim"] == 384
    for split in ("validation", "test"):  # natural rows, no synthetic ones
        assert balanced[split]["rows"] == raw[split]["rows"] and balanced[split]["synthetic"] == 0
        assert balanced[split]["positives"] == raw[split]["positives"]
    assert balanced["train"]["synthetic"] == info["synthetic_rows"] > 0
    assert balanced["train"]["synthetic_text_none"] == balanced["train"]["synthetic"]
    assert all(p >= 25 for p in balanced["train"]["positives"])
    assert all(s.startswith("train-") for s in balanced["train"]["seed_ids"])


def test_same_inputs_and_seed_give_identical_files(tiny_build, tiny_source, embed_cache, tmp_path):
    out, _ = tiny_build
    again = tmp_path / "again"
    build_dataset(tiny_source, again, labels=LABELS, target_per_label=25, keep_no_emotion=0.5, cache_dir=embed_cache, show_progress=False)
    assert parquets(again) == parquets(out)  # same bytes, same fingerprint
    for name in parquets(out) + ["label_counts.png"]:
        assert (out / name).read_bytes() == (again / name).read_bytes(), name
    other_seed = tmp_path / "seed7"
    build_dataset(tiny_source, other_seed, labels=LABELS, target_per_label=25, keep_no_emotion=0.5, cache_dir=embed_cache,
                  seed=7, show_progress=False)
    assert parquet(out, "raw", "train").read_bytes() == parquet(other_seed, "raw", "train").read_bytes()
    assert parquet(out, "balanced", "train").read_bytes() != parquet(other_seed, "balanced", "train").read_bytes()


def test_rebuild_reads_embeddings_from_the_cache(tiny_build, tiny_source, embed_cache, tmp_path, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("the encoder was loaded although every text is cached")

    monkeypatch.setattr(embedding_module, "load_encoder", no_model)
    info = build_dataset(tiny_source, tmp_path / "cached", labels=LABELS, balance="smote", target_per_label=25,
                         cache_dir=embed_cache, show_progress=False)
    assert info["balance"]["method"] == "smote"
    # a new text is not cached: the encoder is needed
    with pytest.raises(AssertionError, match="encoder was loaded"):
        embedding_module.embed_texts(["a text never seen before"], cache_dir=embed_cache, show_progress=False)


def test_embed_texts_cache_matches_the_model(embed_cache, tiny_build):
    texts = ["I am so happy today", "this is terrifying", "I am so happy today"]
    first = embedding_module.embed_texts(texts, cache_dir=embed_cache, show_progress=False)
    assert first.shape == (3, 384) and first.dtype == np.float32
    np.testing.assert_array_equal(first[0], first[2])
    model = embedding_module.load_encoder()
    direct = model.encode(texts[:2], convert_to_numpy=True)
    np.testing.assert_allclose(first[:2], direct, atol=1e-5)
    second = embedding_module.embed_texts(texts, cache_dir=embed_cache, model=object(), show_progress=False)
    np.testing.assert_array_equal(first, second)


def test_random_duplicates_keep_text_and_none_adds_nothing(tiny_source, embed_cache, tmp_path):
    from datasets import load_dataset

    info = build_dataset(tiny_source, tmp_path / "random", labels=LABELS, balance="random", target_per_label=25,
                         cache_dir=embed_cache, show_progress=False)
    train = load_dataset(str(tmp_path / "random"), "balanced", split="train")
    synthetic = [row for row in train if row["is_synthetic"]]
    assert len(synthetic) == info["synthetic_rows"] > 0
    assert all(row["text"] is not None and row["neighbor_id"] is None for row in synthetic)
    info = build_dataset(tiny_source, tmp_path / "none", labels=LABELS, balance="none", keep_no_emotion=1.0,
                         cache_dir=embed_cache, show_progress=False)
    assert info["synthetic_rows"] == 0 and info["rows"]["balanced"] == info["rows"]["raw"]


def test_failures_leave_nothing_half_written(tiny_build, tiny_source, embed_cache, tmp_path, monkeypatch):
    out, _ = tiny_build
    bad = write_tiny_goemotions(tmp_path / "bad")
    with open(bad / "train.tsv", "a", encoding="utf-8") as handle:
        handle.write("a row without ids\n")
    target = tmp_path / "target"
    with pytest.raises(ValueError, match=r"train\.tsv: line 81 has 1 field"):
        build_dataset(bad, target, labels=LABELS, cache_dir=embed_cache, show_progress=False)
    assert not target.exists() and os.listdir(tmp_path) == ["bad"]

    # a failure while writing: the earlier build at OUT stays as it was, the temporary folder is removed
    import emo_hf.data.builder as builder

    before = {p: (out / p).read_bytes() for p in parquets(out)}

    def broken_card(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(builder, "write_dataset_card", broken_card)
    with pytest.raises(OSError, match="disk full"):
        build_dataset(tiny_source, out, labels=LABELS, target_per_label=40, cache_dir=embed_cache, show_progress=False)
    assert {p: (out / p).read_bytes() for p in parquets(out)} == before
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".tiny")) == []


def test_refuses_to_replace_a_folder_that_is_not_a_build(tiny_source, embed_cache, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not an emo-hf dataset folder"):
        build_dataset(tiny_source, precious, labels=LABELS, cache_dir=embed_cache, show_progress=False)
    assert (precious / "notes.txt").read_text() == "keep me" and os.listdir(tmp_path) == ["precious"]


def test_build_refuses_ids_shared_across_splits(embed_cache, tmp_path):
    from datasets import DatasetDict

    from emo_hf.data.loading import from_id_rows

    def rows(ids):
        from datasets import Dataset

        return Dataset.from_dict({"text": [f"text {i}" for i in ids], "labels": [[14]] * len(ids), "id": ids})

    source = DatasetDict({"train": from_id_rows(rows(["a", "b", "c"]), GOEMOTIONS_LABELS, ["fear"]),
                          "validation": from_id_rows(rows(["d"]), GOEMOTIONS_LABELS, ["fear"]),
                          "test": from_id_rows(rows(["a"]), GOEMOTIONS_LABELS, ["fear"])})
    with pytest.raises(LeakageError, match=r"id 'a' is in both 'train' and 'test'"):
        build_dataset(source, tmp_path / "leaky", cache_dir=embed_cache, show_progress=False)
    assert not (tmp_path / "leaky").exists()


def test_cli_build_with_source_from_the_environment(tiny_source, embed_cache, tmp_path, monkeypatch, capsys):
    from emo_hf.cli import main

    monkeypatch.setenv("EMO_HF_GOEMOTIONS", str(tiny_source))
    monkeypatch.setenv("EMO_HF_CACHE", str(embed_cache.parent))
    monkeypatch.setattr(embedding_module, "default_cache_dir", lambda: embed_cache)
    code = main(["data", "build", "--out", str(tmp_path / "cli"), "--labels", ",".join(LABELS), "--balance", "smote",
                 "--target-per-label", "30", "--keep-no-emotion", "0.25", "--seed", "3", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "raw       train 80  validation 16  test 16" in printed and "fear" in printed and "time:" in printed
    info = json.loads((tmp_path / "cli" / "build_info.json").read_text())
    assert info["balance"]["keep_no_emotion"] == 0.25 and info["seed"] == 3 and info["source"] == str(tiny_source)
    code = main(["data", "build", "--source", str(tmp_path / "missing"), "--out", str(tmp_path / "x")])
    assert code == 2 and "not found" in capsys.readouterr().err and not (tmp_path / "x").exists()
    code = main(["data", "build", "--source", str(tiny_source), "--out", str(tmp_path / "y"), "--labels", "joy,happiness"])
    assert code == 2 and "'happiness'" in capsys.readouterr().err


def test_raw_only_build_writes_raw_alone_without_embedding(tiny_build, tiny_source, tmp_path, monkeypatch, capsys):
    """`--raw-only`: the raw config (the same rows and files as a full build's), no embedding computed, a card and
    summary that say so, and a clear error for whoever asks the folder for its balanced config."""
    from emo_hf.cli import main
    from emo_hf.data.builder import load_built

    def no_embedding(*args, **kwargs):
        raise AssertionError("a raw-only build must not embed")

    monkeypatch.setattr(builder_module, "embed_texts", no_embedding)
    out = tmp_path / "raw-only"
    code = main(["data", "build", "--source", str(tiny_source), "--out", str(out), "--labels", ",".join(LABELS),
                 "--raw-only", "--no-progress"])
    assert code == 0
    assert "raw config only (--raw-only)" in capsys.readouterr().out
    info = json.loads((out / "build_info.json").read_text())
    assert sorted(info["files"]) == ["raw"] and info["balance"] is None and info["encoder"] is None
    assert sorted(info["seconds"]) == ["load", "total", "write"]
    full = json.loads((tiny_build[0] / "build_info.json").read_text())
    for split in ("train", "validation", "test"):  # the raw rows are the full build's, byte for byte
        assert (out / info["files"]["raw"][split]).read_bytes() == (tiny_build[0] / full["files"]["raw"][split]).read_bytes()
    card = (out / "README.md").read_text()
    assert "config_name: balanced" not in card and "--raw-only" in card and (out / "label_counts.png").is_file()
    assert load_built(out, "raw")["train"].num_rows == 80
    with pytest.raises(ValueError, match=r"has no 'balanced' config \(it has \['raw'\]\) \(built with --raw-only.*"
                                         r"rebuild it without --raw-only: emo-hf data build --source "):
        load_built(out, "balanced")
    code = main(["data", "build", "--source", str(tiny_source), "--out", str(tmp_path / "z"), "--raw-only",
                 "--balance", "smote"])
    assert code == 2 and "--raw-only does not write" in capsys.readouterr().err and not (tmp_path / "z").exists()


def test_push_to_hub_uploads_the_folder_as_a_dataset_repo(tiny_build, tiny_source, embed_cache, tmp_path, monkeypatch):
    pytest.importorskip("emo_hf.hub")
    from hub_server import HubServer

    server = HubServer(tokens={"hf_test_token": "tester"}).start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_TOKEN", "hf_test_token")
        out = tmp_path / "pushed"
        info = build_dataset(tiny_source, out, labels=LABELS, target_per_label=25, keep_no_emotion=0.5,
                             cache_dir=embed_cache, show_progress=False, push_to_hub="tester/emo-data")
        files = server.files("tester/emo-data", repo_type="dataset")
        local = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
        assert sorted(set(files) - {".gitattributes"}) == local  # the Hub adds .gitattributes when it creates a repo
        name = parquet(out, "balanced", "train").relative_to(out).as_posix()
        assert files[name] == (out / name).read_bytes()
        repo = server.repo("tester/emo-data", repo_type="dataset")
        ours = [c for c in repo.commits.values() if c.message.startswith("emo-hf data build")]
        assert repo.private and len(ours) == 1  # one upload commit (the other is the repo's initial commit)
        assert sorted(set(ours[0].files) - {".gitattributes"}) == local
        assert info["pushed_to"]
    finally:
        server.stop()


# --- the real GoEmotions data -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_emo_hf_data_build_on_real_goemotions(tmp_path):
    """`emo-hf data build` on the real folder, then load_dataset in a fresh process. Embeddings come from the default
    on-disk cache (warm after the README's build command); cold, embedding 54k texts takes minutes on 2 cores."""
    folder = goemotions_dir()
    if folder is None:
        pytest.skip(SKIP_REASON)
    out = tmp_path / "goemotions-built"
    done = subprocess.run([sys.executable, "-m", "emo_hf.cli", "data", "build", "--source", str(folder), "--out", str(out),
                           "--no-progress"], capture_output=True, text=True, cwd=REPO, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "raw       train 43,410  validation 5,426  test 5,427" in done.stdout
    info = json.loads((out / "build_info.json").read_text())
    target = info["balance"]["target_per_label"]
    report = fresh_python(LOAD_AND_DESCRIBE.format(out=str(out)), tmp_path)
    raw, balanced = report["raw"], report["balanced"]
    assert {s: raw[s]["rows"] for s in raw} == {"train": 43410, "validation": 5426, "test": 5427}
    assert raw["train"]["names"] == list(DEFAULT_LABELS)
    counts = dict(zip(raw["train"]["names"], raw["train"]["positives"]))
    assert (counts["admiration"], counts["fear"], counts["love"]) == (4130, 596, 2086)
    assert balanced["validation"]["rows"] == 5426 and balanced["test"]["rows"] == 5427
    for split in ("validation", "test"):
        assert balanced[split]["synthetic"] == 0
        assert balanced[split]["positives"] == raw[split]["positives"]
        assert balanced[split]["ids_head"] == raw[split]["ids_head"]
    assert balanced["train"]["names"] == list(DEFAULT_LABELS)
    assert min(balanced["train"]["positives"]) >= target
    assert balanced["train"]["synthetic"] == info["synthetic_rows"] > 0
    assert balanced["train"]["rows"] == info["no_emotion"]["after"] + (43410 - info["no_emotion"]["before"]) + info["synthetic_rows"]
    assert info["duplicates"]["train/test"]["count_normalized"] == 37
    assert info["duplicates"]["train/validation"]["count_normalized"] == 46


def test_cli_build_from_a_user_csv_without_splits(embed_cache, tmp_path, monkeypatch, capsys):
    from emo_hf.cli import main

    rng = np.random.default_rng(1)
    lines = ["text,feelings"]
    for i in range(60):
        names = [n for n in ("joy", "anger") if rng.random() < 0.4]
        lines.append(f'"message {i}: {" ".join(rng.choice(WORDS, size=4))}","{",".join(names)}"')
    lines.append(lines[1])  # an identical text: must stay in one split
    (tmp_path / "mine.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.setattr(embedding_module, "default_cache_dir", lambda: embed_cache)
    code = main(["data", "build", "--source", str(tmp_path / "mine.csv"), "--out", str(tmp_path / "out"),
                 "--label-column", "feelings", "--labels", "joy,anger", "--target-per-label", "25", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    info = json.loads((tmp_path / "out" / "build_info.json").read_text())
    assert info["labels"] == ["joy", "anger"] and sum(info["rows"]["raw"].values()) == 61
    assert all(v >= 25 for v in info["counts"]["train_after"].values())
    assert info["source_kind"] == "user"
    code = main(["data", "build", "--source", str(tmp_path / "mine.csv"), "--out", str(tmp_path / "out2"),
                 "--label-column", "feelings", "--labels", "default"])
    assert code == 2 and "do not occur in the file" in capsys.readouterr().err


def test_rebuilding_into_an_earlier_build_replaces_it(tiny_source, embed_cache, tmp_path):
    out = tmp_path / "data"
    build_dataset(tiny_source, out, labels=LABELS, target_per_label=25, cache_dir=embed_cache, show_progress=False)
    build_dataset(tiny_source, out, labels=LABELS, target_per_label=30, seed=1, cache_dir=embed_cache, show_progress=False)
    info = json.loads((out / "build_info.json").read_text())
    assert info["seed"] == 1 and info["balance"]["target_per_label"] == 30
    assert os.listdir(tmp_path) == ["data"]  # no temporary or old folders left next to OUT


def test_a_rebuilt_folder_of_the_same_name_loads_its_new_rows(tiny_source, embed_cache, tmp_path):
    """`datasets` caches a local folder by its name and its `configs:` file patterns; the fingerprint in the file names
    keeps a rebuild (or another build in a folder of the same name) from loading the earlier rows."""
    first, second = tmp_path / "a" / "data", tmp_path / "b" / "data"
    build_dataset(tiny_source, first, labels=LABELS, target_per_label=25, cache_dir=embed_cache, show_progress=False)
    build_dataset(tiny_source, second, labels=LABELS, target_per_label=60, cache_dir=embed_cache, show_progress=False)
    import datasets

    rows = [datasets.load_dataset(str(folder), "balanced")["train"].num_rows for folder in (first, second)]
    expected = [json.loads((f / "build_info.json").read_text())["rows"]["balanced"]["train"] for f in (first, second)]
    assert rows == expected and rows[0] != rows[1]
