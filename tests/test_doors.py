"""The ecosystem's doors to a trained model: transformers' pipeline (with and without `import emo_hf`), the ONNX
export run by onnxruntime (emo_hf/onnx_export.py) and the `evaluate` module (emo_hf/evaluate_metric/)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from goemotions_path import SKIP_REASON, goemotions_dir

from emo_hf.cli import main

TEXTS = ["i love this day", "what a great day so happy !", "why would you do that ?", "scared of the dark",
         "thank you very much"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a 2-core machine shared with other jobs, 2 oversubscribed threads are far slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_text_classification_pipeline_scores_are_predict_proba(tiny_emo_model_dir):
    import emo_hf  # noqa: F401  (registers the classes, AutoModelForSequenceClassification included)
    from transformers import AutoModel, pipeline

    model = AutoModel.from_pretrained(str(tiny_emo_model_dir))
    expected = model.predict_proba(TEXTS)
    pipe = pipeline("text-classification", model=str(tiny_emo_model_dir), top_k=None)
    thresholds = pipe.model.config.threshold_map()  # the tuned thresholds, next to the pipeline's scores
    labels = model.config.labels
    for text, scores, want, predicted in zip(TEXTS, pipe(TEXTS), expected, model.predict(TEXTS)):
        by_label = {item["label"]: item["score"] for item in scores}
        assert sorted(by_label) == sorted(labels)
        np.testing.assert_allclose([by_label[name] for name in labels], want, atol=1e-6, err_msg=text)
        assert [name for name in labels if by_label[name] >= thresholds[name]] == predicted["labels"]
    # sigmoid, not softmax: the scores of a text do not sum to 1
    assert all(abs(sum(item["score"] for item in scores) - 1.0) > 0.05 for scores in pipe(TEXTS))

    # Without emo_hf: the code saved next to the model, trusted explicitly.
    code = ("import json, sys; from transformers import pipeline; "
            f"pipe = pipeline('text-classification', model={str(tiny_emo_model_dir)!r}, top_k=None, "
            "trust_remote_code=True); "
            f"print(json.dumps({{'scores': pipe({TEXTS!r}), 'thresholds': pipe.model.config.threshold_map(), "
            "'emo_hf_imported': 'emo_hf' in sys.modules}))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                         env=dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1"))
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["emo_hf_imported"] is False
    assert got["thresholds"] == model.config.threshold_map()
    for scores, want in zip(got["scores"], expected):
        by_label = {item["label"]: item["score"] for item in scores}
        np.testing.assert_allclose([by_label[name] for name in labels], want, atol=1e-6)


def test_onnx_export_matches_pytorch_on_500_test_texts(minilm_random_head_dir, tmp_path, capsys):
    if goemotions_dir() is None:
        pytest.skip(SKIP_REASON)
    from transformers import AutoModel

    from emo_hf.onnx_export import OnnxEmoClassifier, export_onnx

    with open(goemotions_dir() / "test.tsv", encoding="utf-8", newline="") as handle:
        texts = [row[0] for _, row in zip(range(500), csv.reader(handle, delimiter="\t"))]
    model = AutoModel.from_pretrained(str(minilm_random_head_dir))
    out = export_onnx(minilm_random_head_dir, tmp_path / "onnx")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.onnx", "onnx_info.json",
                                                    "thresholds.json", "tokenizer.json", "tokenizer_config.json"]
    onnx_model = OnnxEmoClassifier(out)
    reference = model.predict_proba(texts, batch_size=64)
    got = onnx_model.predict_proba(texts, batch_size=64)
    assert got.shape == (500, 15)
    assert np.abs(got - reference).max() < 1e-4
    assert json.loads((out / "onnx_info.json").read_text())["int8"] is False

    # The command line: an int8 export, then `emo-hf predict --onnx` gives that graph's predictions row by row.
    assert main(["export", str(minilm_random_head_dir), str(tmp_path / "int8"), "--onnx", "--int8"]) == 0
    assert json.loads((tmp_path / "int8" / "onnx_info.json").read_text())["int8"] is True
    assert (tmp_path / "int8" / "model.onnx").stat().st_size < (out / "model.onnx").stat().st_size / 2
    # Batch size 1 on both sides: int8 activations are quantised per batch, so a text's probabilities depend a
    # little on the texts it shares a batch with (and predict sorts texts by length into batches).
    source = tmp_path / "texts.jsonl"
    source.write_text("".join(json.dumps({"text": t, "n": i}) + "\n" for i, t in enumerate(texts[:30])))
    assert main(["predict", str(tmp_path / "int8"), "--onnx", "--input", str(source), "--output",
                 str(tmp_path / "pred.jsonl"), "--batch-size", "1", "--no-progress"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "pred.jsonl").read_text().splitlines()]
    expected = OnnxEmoClassifier(tmp_path / "int8").predict(texts[:30], batch_size=1)
    assert [row["n"] for row in rows] == list(range(30))
    assert [row["labels"] for row in rows] == [want["labels"] for want in expected]
    assert main(["export", str(minilm_random_head_dir), str(tmp_path / "x"), "--int8"]) == 2
    assert "--onnx" in capsys.readouterr().err


def test_evaluate_module_gives_the_numbers_of_compute_metrics(tmp_path):
    from emo_hf.metrics import EVALUATE_MODULE, compute_metrics, multilabel_metrics, tune_thresholds

    rng = np.random.default_rng(0)
    labels = ["joy", "anger", "fear", "grief"]
    y = (rng.random((400, 4)) < [0.3, 0.2, 0.1, 0.02]).astype(int)
    logits = rng.normal(0, 1.5, y.shape) + 2.0 * y
    logits[:5] = 0.0  # probabilities of exactly 0.5: on the threshold
    code = ("import json, sys, numpy as np, evaluate; "
            f"metric = evaluate.load({EVALUATE_MODULE!r}); "
            "data = json.load(sys.stdin); "
            "a = metric.compute(predictions=data['logits'], references=data['y'], from_logits=True, "
            "label_names=data['labels']); "
            "b = metric.compute(predictions=data['probs'], references=data['y'], tune=True); "
            "print(json.dumps({'a': a, 'b': b}))")
    probs = 1.0 / (1.0 + np.exp(-logits))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         input=json.dumps({"logits": logits.tolist(), "y": y.tolist(), "labels": labels,
                                           "probs": probs.tolist()}),
                         env=dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules")))
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["a"] == compute_metrics((logits, y), labels)
    thresholds = tune_thresholds(y, probs)
    assert got["b"]["thresholds"] == thresholds.tolist()
    tuned = multilabel_metrics(y, probs, thresholds)
    assert got["b"]["macro_f1"] == tuned["macro_f1"] and got["b"]["f1_label_3"] == tuned["per_label"]["label_3"]["f1"]


def test_onnx_export_refuses_a_model_that_reads_texts_through_a_prompt(tiny_emo_model_dir, tmp_path):
    """OnnxEmoClassifier feeds texts as they are; a model trained on the instruction template would score other
    inputs than it was trained on, so the export says so instead of writing a graph."""
    import shutil

    from emo_hf.onnx_export import export_onnx

    folder = tmp_path / "model"
    shutil.copytree(tiny_emo_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "prompt": "instruction"}))
    with pytest.raises(ValueError, match=r"prompt='instruction'.*prompt='plain' models only.*--prompt plain"):
        export_onnx(folder, tmp_path / "onnx")
    assert not (tmp_path / "onnx").exists()
