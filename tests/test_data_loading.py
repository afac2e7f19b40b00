"""Loading: the Hub-shaped row conversion, the TSV folder, the user's own files, splits, and bad input errors."""

import json
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset

from emo_hf.data.leakage import LeakageError, check_no_leakage, cross_split_duplicate_texts
from emo_hf.data.loading import from_id_rows, load_goemotions, load_user_data, stratified_split
from emo_hf.labels import DEFAULT_LABELS, GOEMOTIONS_LABELS

from goemotions_path import SKIP_REASON, goemotions_dir

NAMES = list(GOEMOTIONS_LABELS)
ID = {name: i for i, name in enumerate(NAMES)}


def write_goemotions(folder: Path, rows: dict[str, list[str]] | None = None) -> Path:
    """A tiny folder in the official format: text<TAB>ids<TAB>id, CSV quoting, plus labels.txt."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labels.txt").write_text("\n".join(NAMES) + "\n", encoding="utf-8")
    default = {
        "train.tsv": ['I am so scared\t14\tt1', '"He said ""wow"", then left"\t26,18\tt2', 'ok then\t27\tt3'],
        "dev.tsv": ["what a joy\t17\td1"],
        "test.tsv": ["ugh, gross\t11,27\tx1"],
    }
    for name, lines in (rows or default).items():
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_hub_shaped_rows_convert_to_multi_hot_and_names():
    """Rows shaped like the Hub's simplified config (text, labels = ids, id) go through from_id_rows."""
    hub_rows = Dataset.from_dict(
        {"text": ["so scared", "love it, wow", "fine."], "labels": [[14], [18, 26, 0], [27]], "id": ["a", "b", "c"]}
    )
    ds = from_id_rows(hub_rows, NAMES)  # default 15 labels
    assert ds.column_names == ["id", "text", "labels", "emotions"]
    assert ds.features["emotions"].feature.names == list(DEFAULT_LABELS)
    labels = np.array(ds["labels"])
    assert labels.dtype == np.float64 or labels.dtype == np.float32
    assert labels.shape == (3, 15)
    assert labels[0].tolist() == [1.0] + [0.0] * 14  # fear is first
    assert {DEFAULT_LABELS[i] for i in np.flatnonzero(labels[1])} == {"love", "surprise", "admiration"}
    assert labels[2].sum() == 0  # neutral only: a no-emotion row
    assert [ds.features["emotions"].feature.int2str(i) for i in ds[1]["emotions"]] == ["surprise", "admiration", "love"]
    assert ds.features["labels"].feature.dtype == "float32"


def test_hub_shaped_rows_with_unknown_id_and_empty_text():
    with pytest.raises(ValueError, match=r"unknown label id\(s\) \[28\].*0\.\.27"):
        from_id_rows(Dataset.from_dict({"text": ["x"], "labels": [[28]], "id": ["a"]}), NAMES)
    with pytest.raises(ValueError, match="empty text"):
        from_id_rows(Dataset.from_dict({"text": ["  "], "labels": [[1]], "id": ["a"]}), NAMES)


def test_tsv_folder_and_hub_rows_give_the_same_dataset(tmp_path):
    folder = write_goemotions(tmp_path / "go")
    local = load_goemotions(folder, labels=["fear", "love", "surprise", "disgust"])
    assert list(local) == ["train", "validation", "test"]
    assert local["train"]["text"][1] == 'He said "wow", then left'
    hub_like = Dataset.from_dict(
        {"text": ["I am so scared", 'He said "wow", then left', "ok then"], "labels": [[14], [26, 18], [27]], "id": ["t1", "t2", "t3"]}
    )
    converted = from_id_rows(hub_like, NAMES, ["fear", "love", "surprise", "disgust"])
    assert converted.to_dict() == local["train"].to_dict()
    assert converted.features == local["train"].features
    assert local["test"]["labels"] == [[0.0, 0.0, 0.0, 1.0]]


@pytest.mark.parametrize(
    "line, pattern",
    [
        ("only text\t14", r"train\.tsv: line 2 has 2 field\(s\), expected 3"),
        ("text\t14\tid\textra", r"train\.tsv: line 2 has 4 field\(s\)"),
        ("text\t31\tid9", r"train\.tsv: line 2 has unknown label id\(s\) \[31\]; valid ids are 0\.\.27"),
        ("text\tjoy\tid9", r"train\.tsv: line 2 has label field 'joy'"),
        ("\t14\tid9", r"train\.tsv: line 2 \(id 'id9'\) has an empty text"),
    ],
)
def test_bad_tsv_rows_name_file_and_line(tmp_path, line, pattern):
    folder = write_goemotions(tmp_path / "go")
    (folder / "train.tsv").write_text("fine\t14\tok1\n" + line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=pattern):
        load_goemotions(folder)


def test_non_utf8_names_file_line_and_offset(tmp_path):
    folder = write_goemotions(tmp_path / "go")
    (folder / "dev.tsv").write_bytes(b"fine\t14\td1\ncaf\xe9\t17\td2\n")
    with pytest.raises(ValueError, match=r"dev\.tsv: line 2 \(byte offset 14\) is not valid UTF-8"):
        load_goemotions(folder)


def test_missing_files_and_labels(tmp_path):
    folder = write_goemotions(tmp_path / "go")
    (folder / "test.tsv").unlink()
    with pytest.raises(FileNotFoundError, match="test.tsv is missing"):
        load_goemotions(folder)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_goemotions(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"Unknown label name\(s\) \['happiness'\]"):
        load_goemotions(write_goemotions(tmp_path / "go2"), labels=["joy", "happiness"])


# --- the user's own data -----------------------------------------------------------------------------------------


def user_rows(n: int = 60):
    names = ["joy", "anger", "fear"]
    rows = []
    for i in range(n):
        chosen = [names[i % 3]] if i % 4 else []
        if i % 7 == 0:
            chosen.append(names[(i + 1) % 3])
        rows.append({"id": f"u{i}", "text": f"message number {i}", "emotions": chosen})
    return rows


def test_user_csv_with_label_lists_and_no_splits(tmp_path):
    path = tmp_path / "mine.csv"
    lines = ["id,text,emotions"] + [f'{r["id"]},{r["text"]},"{",".join(r["emotions"])}"' for r in user_rows()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ds = load_user_data(path, label_column="emotions", labels=["joy", "anger", "fear"], seed=3)
    assert sum(ds[s].num_rows for s in ds) == 60
    assert ds["train"].features["emotions"].feature.names == ["joy", "anger", "fear"]
    check_no_leakage({s: ds[s] for s in ds})
    again = load_user_data(path, label_column="emotions", labels=["joy", "anger", "fear"], seed=3)
    assert again["test"]["id"] == ds["test"]["id"]
    row = next(r for r in ds["train"] if r["id"] == "u7")  # i=7: anger (7%3=1) + fear
    assert row["labels"] == [0.0, 1.0, 1.0]


def test_user_jsonl_with_flag_columns_and_split_column(tmp_path):
    path = tmp_path / "mine.jsonl"
    splits = ["train"] * 6 + ["dev"] * 2 + ["test"] * 2
    records = [{"text": f"t{i}", "joy": i % 2, "anger": int(i % 3 == 0), "split": splits[i]} for i in range(10)]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    ds = load_user_data(path, label_column=["joy", "anger"], split_column="split")
    assert {s: ds[s].num_rows for s in ds} == {"train": 6, "validation": 2, "test": 2}
    assert ds["train"]["labels"][0] == [0.0, 1.0] and ds["train"]["id"][0] == "row-0"


def test_user_parquet(tmp_path):
    import pandas as pd

    path = tmp_path / "mine.parquet"
    pd.DataFrame(user_rows(30)).to_parquet(path)
    ds = load_user_data(path, label_column="emotions")
    assert ds["train"].features["emotions"].feature.names == ["anger", "fear", "joy"]  # inferred, sorted


def test_user_data_errors(tmp_path):
    csv_path = tmp_path / "bad.csv"
    csv_path.write_text("text,emotions\nhello,joy\nbroken,joy,extra\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.csv: line 3 has 3 field\(s\), the header has 2"):
        load_user_data(csv_path, label_column="emotions")
    csv_path.write_text("text,emotions\nhello,joy\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"no text column 'body'"):
        load_user_data(csv_path, text_column="body", label_column="emotions")
    with pytest.raises(ValueError, match=r"no label column 'feelings'"):
        load_user_data(csv_path, label_column="feelings")
    with pytest.raises(ValueError, match=r"Unknown label name\(s\) \['rage'\]. Valid names are: joy"):
        load_user_data(csv_path, label_column="emotions", labels=["joy", "rage"])
    csv_path.write_text('text,emotions\nhello,joy\n"",joy\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"row 1 .* empty 'text'"):
        load_user_data(csv_path, label_column="emotions")
    csv_path.write_bytes(b"text,emotions\nhello,joy\n\xff\xfe,joy\n")
    with pytest.raises(ValueError, match=r"bad\.csv: line 3 \(byte offset 24\) is not valid UTF-8"):
        load_user_data(csv_path, label_column="emotions")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_user_data(tmp_path / "absent.csv")
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text('{"text": "a", "joy": 1}\n{"text": "b", "joy": 2}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl: row 1 \(line 2\), column 'joy' holds 2"):
        load_user_data(jsonl, label_column=["joy"])


def test_stratified_split_keeps_identical_texts_together_and_stratifies():
    rng = np.random.default_rng(0)
    texts = [f"text {i % 400}" for i in range(500)]  # 100 texts appear twice
    labels = np.zeros((500, 3), dtype=np.float32)
    labels[np.arange(500), rng.integers(0, 3, 500)] = 1
    for i in range(500):  # duplicates share labels
        labels[i] = labels[i % 400]
    parts = stratified_split(texts, labels, seed=1)
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(500))
    owner = {}
    for split, rows in parts.items():
        for row in rows:
            assert owner.setdefault(texts[row], split) == split
    assert 360 <= len(parts["train"]) <= 440
    for split in ("validation", "test"):
        share = labels[parts[split]].mean(0)
        assert np.abs(share - labels.mean(0)).max() < 0.1
    assert stratified_split(texts, labels, seed=1)["test"].tolist() == parts["test"].tolist()


# --- leakage guard ----------------------------------------------------------------------------------------------


def test_leakage_guard_refuses_shared_ids_and_foreign_seeds():
    train = {"id": ["a", "b", "s1"], "is_synthetic": [False, False, True], "seed_id": [None, None, "a"], "neighbor_id": [None, None, "b"]}
    validation = {"id": ["c"], "is_synthetic": [False], "seed_id": [None], "neighbor_id": [None]}
    test = {"id": ["d"], "is_synthetic": [False], "seed_id": [None], "neighbor_id": [None]}
    check_no_leakage({"train": train, "validation": validation, "test": test})
    with pytest.raises(LeakageError, match=r"id 'a' is in both 'train' and 'test'"):
        check_no_leakage({"train": train, "validation": validation, "test": {**test, "id": ["a"]}})
    bad = {**train, "neighbor_id": [None, None, "d"]}
    with pytest.raises(LeakageError, match=r"neighbour 'd' from 'test', not a real 'train' row"):
        check_no_leakage({"train": bad, "validation": validation, "test": test})
    bad = {**train, "seed_id": [None, None, "c"]}
    with pytest.raises(LeakageError, match=r"seed 'c' from 'validation'"):
        check_no_leakage({"train": bad, "validation": validation, "test": test})
    bad = {**train, "seed_id": [None, None, "s1"]}  # a synthetic row is not a real seed
    with pytest.raises(LeakageError, match=r"seed 's1'"):
        check_no_leakage({"train": bad, "validation": validation, "test": test})
    synthetic_test = {"id": ["d"], "is_synthetic": [True], "seed_id": ["a"], "neighbor_id": ["b"]}
    with pytest.raises(LeakageError, match=r"synthetic row\(s\) in 'test'"):
        check_no_leakage({"train": train, "validation": validation, "test": synthetic_test})


def test_cross_split_duplicates_counted_exactly_and_normalised():
    found = cross_split_duplicate_texts({"train": ["Bless you.", "hi", "hi", "Yes"], "test": ["bless  you.", "hi", "no"]})
    pair = found["train/test"]
    assert pair["count"] == 1 and pair["rows"] == {"train": 2, "test": 1}
    assert pair["count_normalized"] == 2 and pair["examples"] == ["hi"]


# --- the real GoEmotions folder ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def goemotions():
    folder = goemotions_dir()
    if folder is None:
        pytest.skip(SKIP_REASON)
    return load_goemotions(folder)


@pytest.mark.slow
def test_real_goemotions_sizes_and_counts(goemotions):
    assert {s: goemotions[s].num_rows for s in goemotions} == {"train": 43410, "validation": 5426, "test": 5427}
    names = goemotions["train"].features["emotions"].feature.names
    counts = dict(zip(names, np.array(goemotions["train"]["labels"]).sum(0).astype(int).tolist()))
    assert counts["admiration"] == 4130 and counts["fear"] == 596 and counts["love"] == 2086
    assert min(counts.values()) == counts["fear"]
    check_no_leakage({s: goemotions[s] for s in goemotions})


@pytest.mark.slow
def test_real_goemotions_cross_split_duplicates(goemotions):
    found = cross_split_duplicate_texts({s: goemotions[s]["text"] for s in goemotions})
    # exact distinct texts; case/whitespace-insensitive they are the 46 / 37 quoted in the issue
    assert (found["train/validation"]["count"], found["train/validation"]["count_normalized"]) == (41, 46)
    assert (found["train/test"]["count"], found["train/test"]["count_normalized"]) == (32, 37)
    assert "Bless you." in found["train/test"]["examples"]


def test_hub_code_path_gives_the_same_rows_as_the_folder(tmp_path, monkeypatch):
    """The Hub can't be reached here: datasets.load_dataset is replaced by a stand-in returning what the Hub's
    go_emotions `simplified` config holds (text, labels = List(ClassLabel(28 names)), id); the rest is the real path."""
    import datasets
    from datasets import ClassLabel, DatasetDict, Features, List, Value

    folder = write_goemotions(tmp_path / "go")
    local = load_goemotions(folder)
    features = Features({"text": Value("string"), "labels": List(ClassLabel(names=NAMES)), "id": Value("string")})
    hub_splits = {
        "train": {"text": ["I am so scared", 'He said "wow", then left', "ok then"], "labels": [[14], [26, 18], [27]], "id": ["t1", "t2", "t3"]},
        "validation": {"text": ["what a joy"], "labels": [[17]], "id": ["d1"]},
        "test": {"text": ["ugh, gross"], "labels": [[11, 27]], "id": ["x1"]},
    }
    calls = []

    def hub_stand_in(path, name=None, **kwargs):
        calls.append((path, name))
        return DatasetDict({s: Dataset.from_dict(rows, features=features) for s, rows in hub_splits.items()})

    monkeypatch.setattr(datasets, "load_dataset", hub_stand_in)
    hub = load_goemotions("google-research-datasets/go_emotions")
    assert calls == [("google-research-datasets/go_emotions", "simplified")]
    for split in ("train", "validation", "test"):
        assert hub[split].to_dict() == local[split].to_dict()
        assert hub[split].features == local[split].features

    def offline(*args, **kwargs):
        raise ConnectionError("no route to huggingface.co")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(RuntimeError, match=r"Could not load 'google-research-datasets/go_emotions'.*--source ../shared/goemotions"):
        load_goemotions("google-research-datasets/go_emotions")


def test_hub_dataset_through_the_real_client_gives_the_same_rows_as_the_folder(tmp_path):
    """`load_goemotions("google-research-datasets/go_emotions")` with the real datasets / huggingface_hub client
    against the stand-in Hub (tests/hub_server.py, HF_ENDPOINT): a dataset repo laid out as the Hub's go_emotions is
    (simplified/{split}-00000-of-00001.parquet, labels = List(ClassLabel(28 names)), README configs), in a fresh
    process with an empty HF cache; the rows must equal the TSV folder's."""
    import subprocess
    import sys

    from datasets import ClassLabel, Features, List, Value
    from hub_server import TOKEN, HubServer, subprocess_env

    folder = write_goemotions(tmp_path / "go")
    local = load_goemotions(folder)
    features = Features({"text": Value("string"), "labels": List(ClassLabel(names=NAMES)), "id": Value("string")})
    hub_splits = {
        "train": {"text": ["I am so scared", 'He said "wow", then left', "ok then"], "labels": [[14], [26, 18], [27]],
                  "id": ["t1", "t2", "t3"]},
        "validation": {"text": ["what a joy"], "labels": [[17]], "id": ["d1"]},
        "test": {"text": ["ugh, gross"], "labels": [[11, 27]], "id": ["x1"]},
    }
    repo = tmp_path / "repo"
    (repo / "simplified").mkdir(parents=True)
    for split, rows in hub_splits.items():
        Dataset.from_dict(rows, features=features).to_parquet(str(repo / "simplified" / f"{split}-00000-of-00001.parquet"))
    (repo / "README.md").write_text("---\nconfigs:\n- config_name: simplified\n  data_files:\n"
                                    + "".join(f"  - split: {s}\n    path: simplified/{s}-*\n" for s in hub_splits)
                                    + "  default: true\n---\n# GoEmotions (stand-in)\n", encoding="utf-8")
    server = HubServer(tokens={TOKEN: "google-research-datasets"}).start()
    try:
        upload = ("from huggingface_hub import HfApi; api = HfApi(); repo = 'google-research-datasets/go_emotions'; "
                  "api.create_repo(repo, repo_type='dataset'); "
                  f"api.upload_folder(folder_path={str(repo)!r}, repo_id=repo, repo_type='dataset')")
        done = subprocess.run([sys.executable, "-c", upload], env=subprocess_env(server, tmp_path, token=TOKEN),
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        read = ("import json; from emo_hf.data.loading import load_goemotions; "
                "d = load_goemotions('google-research-datasets/go_emotions'); "
                "print(json.dumps({s: d[s].to_dict() for s in d}))")
        done = subprocess.run([sys.executable, "-c", read], env=subprocess_env(server, tmp_path),
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        got = json.loads(done.stdout.strip().splitlines()[-1])
        assert got == {split: local[split].to_dict() for split in ("train", "validation", "test")}
        missing = "from emo_hf.data.loading import load_goemotions; load_goemotions('google-research-datasets/nope')"
        done = subprocess.run([sys.executable, "-c", missing], env=subprocess_env(server, tmp_path),
                              capture_output=True, text=True, timeout=300)
        assert done.returncode != 0 and "Could not load 'google-research-datasets/nope'" in done.stderr
    finally:
        server.stop()
