"""Training and evaluation end to end on real GoEmotions rows with the tiny random Mistral (`--preset tiny-random`):
train -> best epoch restored -> thresholds tuned on validation -> evaluate on test -> report + plots; --resume after a
hard kill; a NaN loss; bad data."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from emo_hf.cli import main
from emo_hf.data.builder import load_built
from emo_hf.presets import get_preset

from goemotions_path import REPO

TINY = get_preset("tiny-random")


@pytest.fixture(scope="module")
def trained(goemotions_slice_data, tmp_path_factory):
    """`emo-hf train` (2 epochs) then `emo-hf evaluate` on the test split, as the README shows them."""
    out = tmp_path_factory.mktemp("train") / "run"
    assert main(["train", "--data", str(goemotions_slice_data), "--out", str(out), "--preset", "tiny-random",
                 "--epochs", "2"]) == 0
    assert main(["evaluate", str(out / "model"), "--data", str(goemotions_slice_data), "--out", str(out)]) == 0
    return out


def test_train_then_evaluate_writes_the_report_and_plots(trained):
    for name in ("report.json", "report.md", "per_label_f1.png", "label_counts.png"):
        assert (trained / name).stat().st_size > 0, name
        assert (trained / "model" / name).is_file(), f"the model folder carries a copy of {name}"
    report = json.loads((trained / "report.json").read_text())
    assert report["split"] == "test" and report["n_examples"] == 200
    assert report["val_tuned"] is True
    assert set(report["baselines"]) == {"tfidf_logreg", "embedding_logreg"}
    thresholds = json.loads((trained / "model" / "thresholds.json").read_text())
    thresholds = thresholds.get("thresholds", thresholds)
    assert report["thresholds"] == pytest.approx(thresholds)
    assert (trained / "report.md").read_text().count("|") > 50  # the per-label table is there
    card = (trained / "model" / "README.md").read_text()
    assert "{{" not in card and "macro" in card.lower()


def test_the_best_epoch_is_restored_and_thresholds_come_from_validation(trained, goemotions_slice_data):
    info = json.loads((trained / "model" / "training_info.json").read_text())
    evals = [entry["eval_macro_f1"] for entry in info["log_history"] if "eval_macro_f1" in entry]
    assert len(evals) == 2
    assert info["best_validation_macro_f1_at_0.5"] == pytest.approx(max(evals))
    # the saved model scores exactly the best epoch's validation macro-F1 at 0.5 ...
    assert info["validation_metrics_at_0.5"]["macro_f1"] == pytest.approx(max(evals), abs=1e-6)
    # ... and tuned thresholds never do worse than 0.5 on the split they were tuned on
    assert info["validation_metrics_tuned"]["macro_f1"] >= info["validation_metrics_at_0.5"]["macro_f1"]
    assert info["selection"]["threshold_split"] == "validation"
    # the saved folder, reloaded, reproduces the trained model on validation texts (emo_hf.reload_check)
    check = info["reload_check"]
    assert check["ok"] is True and check["rows"] == 200
    # both references: predict_proba in memory, and the training loop's own collated batches
    assert check["predict_proba"]["max_abs_difference"] < 1e-4 and check["training_loop"]["max_abs_difference"] < 1e-4


def test_the_run_records_where_its_time_went(trained):
    info = json.loads((trained / "model" / "training_info.json").read_text())
    timing = info["step_timing"]  # emo_hf.step_timing: every optimiser step, the time before and after epochs
    assert timing["steps"] == max(entry["step"] for entry in info["log_history"])
    assert len(timing["epoch_seconds"]) == 2 and len(timing["after_epoch_seconds"]) == 2
    assert 0 < timing["median_step_ms"] <= timing["p90_step_ms"]
    phases = timing["before_first_step_s"] + timing["steps_seconds"] + sum(timing["after_epoch_seconds"])
    assert phases <= info["train_seconds"] + 0.5


def test_the_saved_model_predicts_what_the_report_scored(trained, goemotions_slice_data):
    import datasets

    from emo_hf.pipeline import load_trained_model, split_probabilities

    model = load_trained_model(trained / "model")
    test = load_built(goemotions_slice_data, "raw")["test"]
    probs = split_probabilities(model, test, show_progress=False)
    from emo_hf.metrics import multilabel_metrics

    report = json.loads((trained / "report.json").read_text())
    y = np.asarray(test["labels"])
    assert multilabel_metrics(y, probs, 0.5)["macro_f1"] == pytest.approx(report["metrics_at_0.5"]["macro_f1"])
    # the thresholds were tuned on validation predictions lined up with their own labels (Trainer length-groups
    # evaluation rows too): the saved model, scored on validation in the dataset's order, gives the recorded numbers
    info = json.loads((trained / "model" / "training_info.json").read_text())
    validation = load_built(goemotions_slice_data, "raw")["validation"]
    val_probs = split_probabilities(model, validation, show_progress=False)
    y_val = np.asarray(validation["labels"])
    tuned = multilabel_metrics(y_val, val_probs, list(model.config.thresholds))["macro_f1"]
    assert tuned == pytest.approx(info["validation_metrics_tuned"]["macro_f1"], abs=1e-6)
    first = model.predict([test[0]["text"]])[0]
    assert set(first["probabilities"]) == set(model.config.labels)


def test_embedding_mode_trains_on_the_ismote_rows(goemotions_slice_data, tmp_path):
    import datasets

    from emo_hf.trainer import train

    balanced = load_built(goemotions_slice_data, "balanced")
    assert sum(balanced["train"]["is_synthetic"]) > 0
    result = train(goemotions_slice_data, tmp_path / "emb", TINY.replace(input_mode="embedding", epochs=1),
                   show_progress=False)
    info = json.loads((result.model_dir / "training_info.json").read_text())
    assert info["train_rows"] == len(balanced["train"])  # synthetic rows included
    assert (result.model_dir / "label_balance.png").is_file()  # the balancing chart travels with the model
    config = json.loads((result.model_dir / "config.json").read_text())
    assert config["input_mode"] == "embedding" and config["encoder_name"]


def test_text_mode_train_options_sample_the_train_split_only(goemotions_slice_data):
    import datasets

    from emo_hf.training_data import select_train_rows

    train_split = load_built(goemotions_slice_data, "raw")["train"]
    y = np.asarray(train_split["labels"])
    empty = int((y.sum(1) == 0).sum())
    kept = select_train_rows(train_split, TINY.replace(keep_no_emotion=0.5))
    y_kept = np.asarray(kept["labels"])
    assert int((y_kept.sum(1) == 0).sum()) == round(empty * 0.5)
    assert (y_kept.sum(0) == y.sum(0)).all()  # every emotion row kept
    oversampled = np.asarray(select_train_rows(train_split, TINY.replace(train_balance="random", target_per_label=20))["labels"])
    assert (oversampled.sum(0) >= np.minimum(20, np.where(y.sum(0) > 0, 20, 0))).all()


KILL_AFTER_FIRST_SAVE = textwrap.dedent("""
    import os, sys
    from transformers import TrainerCallback
    from emo_hf.presets import get_preset
    from emo_hf.trainer import train

    class Kill(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            print("KILLED_AT", state.global_step, flush=True)
            os._exit(9)  # like SIGKILL: no cleanup, no final save

    train(sys.argv[1], sys.argv[2], get_preset("tiny-random").replace(epochs=3), show_progress=False, callbacks=[Kill()])
""")


def test_a_killed_run_resumes_from_its_checkpoint(goemotions_slice_data, tmp_path):
    from transformers import TrainerCallback

    from emo_hf.trainer import train

    out = tmp_path / "killed"
    done = subprocess.run([sys.executable, "-c", KILL_AFTER_FIRST_SAVE, str(goemotions_slice_data), str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 9, done.stderr[-2000:]
    killed_at = int(done.stdout.split("KILLED_AT")[1].split()[0])
    assert (out / "checkpoints" / f"checkpoint-{killed_at}").is_dir()
    assert not (out / "model").exists()  # nothing half-written

    with pytest.raises(FileExistsError, match="--resume"):
        train(goemotions_slice_data, out, TINY.replace(epochs=3), show_progress=False)

    # A run started by an older emo_hf (before --compile; its unsloth=true meant "where installed") still resumes on
    # a CPU: that true is read as unset, not as "Unsloth required".
    saved = json.loads((out / "train_settings.json").read_text())
    (out / "train_settings.json").write_text(json.dumps({**saved, "setting_from_a_newer_emo_hf": 1}))
    with pytest.raises(ValueError, match=r"setting_from_a_newer_emo_hf.*started by a newer emo_hf"):
        train(goemotions_slice_data, out, TINY.replace(epochs=3), resume=True, show_progress=False)
    for key in ("compile", "compile_mode", "compile_scope"):
        saved.pop(key)
    (out / "train_settings.json").write_text(json.dumps({**saved, "unsloth": True}))

    steps: list[int] = []

    class FirstStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            steps.append(state.global_step)

    result = train(goemotions_slice_data, out, TINY.replace(epochs=3), resume=True, show_progress=False,
                   callbacks=[FirstStep()])
    assert steps[0] == killed_at + 1, "resumed from the checkpoint, not from scratch"
    info = json.loads((result.model_dir / "training_info.json").read_text())
    assert [e["epoch"] for e in info["log_history"] if "eval_macro_f1" in e] == [1.0, 2.0, 3.0]


def test_resume_without_a_checkpoint_says_so(goemotions_slice_data, tmp_path):
    from emo_hf.trainer import train

    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(goemotions_slice_data, tmp_path / "fresh", TINY, resume=True, show_progress=False)


def test_a_nan_loss_stops_with_a_clear_message_and_the_last_checkpoint_loads(goemotions_slice_data, tmp_path):
    import torch
    from transformers import TrainerCallback

    from emo_hf.pipeline import load_trained_model
    from emo_hf.trainer import NonFiniteLossError, train

    class Poison(TrainerCallback):
        """After the first epoch's checkpoint, the head's weights become NaN, as after a diverged update."""

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.epoch is not None and state.epoch > 1.0:
                with torch.no_grad():
                    model.score.weight.fill_(float("nan"))

    with pytest.raises(NonFiniteLossError, match=r"checkpoint-\d+") as error:
        train(goemotions_slice_data, tmp_path / "nan", TINY.replace(epochs=3), show_progress=False,
              callbacks=[Poison()])
    assert "--learning-rate" in str(error.value)
    last = Path(str(error.value).split("last good checkpoint is ")[1].split(" ")[0])
    model = load_trained_model(last)
    probs = model.predict_proba(["I am so happy for you!"])
    assert np.isfinite(probs).all()
    assert not (tmp_path / "nan" / "model").exists()


def test_tokenizing_the_splits_never_pickles_the_model(goemotions_slice_data, tiny_mistral_dir):
    """datasets fingerprints a map by pickling its function; the function holds the model's format_texts, so every
    weight was copied and hashed before training (13 s of a SmolLM2-135M run). The fingerprint is now made from the
    split, tokenizer, max_length and prompt: the model is never pickled, the same inputs give the same fingerprint
    (the map files are reused, in every DDP rank), and another prompt or max_length another one."""
    from transformers import AutoTokenizer

    from emo_hf.training_data import load_splits, tokenize_splits

    class Model:  # format_texts bound to an object that counts being pickled (as dill would pickle the model)
        pickled = 0

        def __init__(self, prefix):
            self.prefix = prefix

        def __reduce_ex__(self, protocol):
            Model.pickled += 1
            return (Model, (self.prefix,))

        def format_texts(self, texts):
            return [self.prefix + t for t in texts]

    splits, _ = load_splits(goemotions_slice_data, "text")
    splits = {"validation": splits["validation"]}
    tokenizer = AutoTokenizer.from_pretrained(tiny_mistral_dir)

    def fingerprint(prefix="", max_length=32):
        return tokenize_splits(splits, tokenizer, max_length, Model(prefix).format_texts)["validation"]

    encoded = fingerprint("Text: ")
    assert Model.pickled == 0
    text = splits["validation"][3]["text"]
    assert encoded[3]["input_ids"] == tokenizer("Text: " + text, truncation=True, max_length=32)["input_ids"]
    assert encoded._fingerprint == fingerprint("Text: ")._fingerprint
    assert len({encoded._fingerprint, fingerprint("Emotions: ")._fingerprint,
                fingerprint("Text: ", max_length=16)._fingerprint}) == 3


# ---- bad data -----------------------------------------------------------------------------------------------------
def _copy(data: Path, tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(data, target)
    return target


def test_a_missing_column_is_named(goemotions_slice_data, tmp_path):
    from emo_hf.training_data import load_splits

    data = _copy(goemotions_slice_data, tmp_path)
    path = data / json.loads((data / "build_info.json").read_text())["files"]["raw"]["validation"]
    # as another tool would write it: no `text` column and no Hugging Face features metadata
    pq.write_table(pq.read_table(path).drop(["text"]).replace_schema_metadata(None), path)
    with pytest.raises(ValueError, match=r"'validation' split .* lacks column\(s\) \['text'\]"):
        load_splits(data, "text")


def test_an_empty_split_is_refused(goemotions_slice_data, tmp_path):
    from emo_hf.training_data import load_splits

    data = _copy(goemotions_slice_data, tmp_path)
    path = data / json.loads((data / "build_info.json").read_text())["files"]["raw"]["validation"]
    pd.read_parquet(path).iloc[:0].to_parquet(path)
    with pytest.raises(ValueError, match="'validation' split .* is empty"):
        load_splits(data, "text")


def test_a_folder_that_is_not_a_dataset_says_how_to_build_one(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "out"), "--preset", "tiny-random"]) == 2
    assert "emo-hf data build --out" in capsys.readouterr().err


def test_evaluating_on_data_with_other_labels_is_refused(trained, tmp_path):
    from emo_hf.data.builder import build_dataset
    from emo_hf.pipeline import evaluate_model

    from goemotions_path import write_goemotions_slice

    other = tmp_path / "other"
    sliced = write_goemotions_slice(tmp_path / "src", 200, 50, 50)
    build_dataset(sliced, other, labels=["joy", "anger"], balance="none", show_progress=False,
                  cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match=r"predicts .* but the dataset .* has labels \['joy', 'anger'\]"):
        evaluate_model(trained / "model", other, baselines=False, show_progress=False)


def test_saved_probabilities_give_the_same_report_without_the_model(trained, goemotions_slice_data, tmp_path):
    """The GPU workflow: score on the GPU machine, bring back config + thresholds + probabilities, report here."""
    from emo_hf.pipeline import evaluate_model

    light = tmp_path / "model"
    light.mkdir()
    for name in ("config.json", "thresholds.json", "training_info.json"):
        shutil.copyfile(trained / "model" / name, light / name)
    report = evaluate_model(light, goemotions_slice_data, out_dir=tmp_path / "eval", baselines=False,
                            probabilities=trained / "test_probabilities.npy", show_progress=False)
    original = json.loads((trained / "report.json").read_text())
    assert report["metrics_tuned"] == pytest.approx(original["metrics_tuned"])
    assert report["per_label"] == original["per_label"]
    with pytest.raises(ValueError, match="shape"):
        np.save(tmp_path / "wrong.npy", np.zeros((3, 15)))
        evaluate_model(light, goemotions_slice_data, out_dir=tmp_path / "eval", baselines=False,
                       probabilities=tmp_path / "wrong.npy", show_progress=False)
