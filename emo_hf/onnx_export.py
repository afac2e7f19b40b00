"""ONNX export of a trained model for CPU serving, and its onnxruntime predictor.

    emo-hf export runs/default/model runs/onnx --onnx           # float32 graph
    emo-hf export runs/default/model runs/onnx-int8 --onnx --int8   # + dynamic int8 quantisation of the weights
    emo-hf predict runs/onnx --onnx --input texts.csv --output texts.pred.csv

    from emo_hf.onnx_export import OnnxEmoClassifier
    model = OnnxEmoClassifier("runs/onnx")
    model.predict(["Thanks so much!"])      # same output as EmoModelForMultiLabel.predict

The exported folder holds `model.onnx` (inputs: the tokenizer's `input_ids`, `attention_mask` [and `token_type_ids`],
dynamic batch and sequence axes; output: `logits` [batch, labels]), the tokenizer, `config.json` (labels,
max_length), `thresholds.json` and `onnx_info.json` (opset, int8, the largest probability difference to PyTorch
measured at export). The graph is traced with torch's TorchScript exporter (`dynamo=False`): the dynamo exporter
needs onnxscript, which this project does not depend on. Text-mode models only (embedding mode would need the
sentence encoder exported too); encoder backbones are what it is made for; a decoder is tried and, where tracing
fails, refused with the reason. `--int8` is onnxruntime's dynamic quantisation (int8 weights per channel,
activations quantised per batch at run time): a text's int8 probabilities therefore depend slightly on the other
texts of its batch; the float32 graph's do not (beyond float rounding).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

logger = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
INFO_FILE = "onnx_info.json"
DEFAULT_OPSET = 17
FP32_TOLERANCE = 1e-3  # export refuses a float32 graph whose probabilities differ more from PyTorch's
CHECK_TEXTS = ["Thank you so much, this made my day!", "I can't believe you did that. I'm furious.",
               "ok", "Why would anyone do this? I'm so confused and a little scared of what comes next."]


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    from scipy.special import expit

    return expit(np.asarray(logits, dtype=np.float64))


class OnnxEmoClassifier:
    """An ONNX export folder run by onnxruntime: `predict_proba` / `predict` like EmoModelForMultiLabel's.

    `config` is the model's EmoConfig (labels, thresholds from thresholds.json, max_length).
    """

    def __init__(self, folder: str | os.PathLike, providers: Sequence[str] | None = None,
                 intra_op_threads: int | None = None):
        import onnxruntime as ort

        from .configuration import EmoConfig
        from .modeling import THRESHOLDS_FILE, ensure_pad_token, pad_as_in_training

        self.folder = Path(folder)
        if not (self.folder / ONNX_FILE).is_file():
            raise FileNotFoundError(f"{self.folder} has no {ONNX_FILE}: export one first with "
                                    f"emo-hf export MODEL {self.folder} --onnx")
        self.config = EmoConfig.from_pretrained(str(self.folder))
        if (self.folder / THRESHOLDS_FILE).is_file():
            self.config.set_thresholds(json.loads((self.folder / THRESHOLDS_FILE).read_text()))
        from transformers import AutoTokenizer

        # config= skips AutoConfig's lookup of config.json (emo_multilabel), as modeling_backbone.load_saved_tokenizer does
        self.tokenizer = pad_as_in_training(ensure_pad_token(AutoTokenizer.from_pretrained(str(self.folder),
                                                                                 config=self.config)))
        options = ort.SessionOptions()
        # OMP_NUM_THREADS, as torch reads it (onnxruntime's own pool ignores it): one knob for both engines
        intra_op_threads = intra_op_threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
        if intra_op_threads:
            options.intra_op_num_threads = intra_op_threads
        self.session = ort.InferenceSession(str(self.folder / ONNX_FILE), options,
                                            providers=list(providers or ["CPUExecutionProvider"]))
        self.input_names = [i.name for i in self.session.get_inputs()]

    def predict_proba(self, texts: Sequence[str] | str, batch_size: int = 32) -> np.ndarray:
        """Probabilities [len(texts), num_labels] in label order."""
        from .modeling import EmoModelForMultiLabel, tokenize_for_prediction

        texts = EmoModelForMultiLabel.check_texts(texts)
        chunks = []
        for start in range(0, len(texts), batch_size):
            encoded = tokenize_for_prediction(self.tokenizer, texts[start:start + batch_size],
                                              self.config.max_length, return_tensors="np")
            feed = {name: np.asarray(encoded[name], dtype=np.int64) for name in self.input_names}
            chunks.append(_sigmoid(self.session.run(["logits"], feed)[0]))
        return np.concatenate(chunks) if chunks else np.zeros((0, self.config.num_labels))

    def predict(self, texts: Sequence[str] | str, batch_size: int = 32, threshold_shift: float = 0.0) -> list[dict]:
        """Per text: `{"labels": [...], "probabilities": {label: p}}`, as EmoModelForMultiLabel.predict."""
        probabilities = self.predict_proba(texts, batch_size=batch_size)
        labels = self.config.labels
        thresholds = np.clip(np.asarray(self.config.thresholds) + threshold_shift, 0.0, 1.0)
        return [{"labels": [labels[j] for j in np.flatnonzero(row >= thresholds)],
                 "probabilities": {name: float(p) for name, p in zip(labels, row)}} for row in probabilities]


def _logits_module(model: Any, input_names: list[str]):
    """The classifier as a module of positional tensors -> logits (what the TorchScript exporter traces)."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *tensors):
            return self.model(**dict(zip(input_names, tensors))).logits

    return LogitsOnly()


def export_onnx(model_dir: str | os.PathLike, out: str | os.PathLike, *, int8: bool = False,
                opset: int = DEFAULT_OPSET) -> Path:
    """Write the ONNX export of the trained model in `model_dir` into `out` (built next to it, then moved into
    place; `out` must not exist, be empty, or hold an earlier ONNX export). Returns `out`.

    >>> export_onnx("runs/default/model", "runs/onnx-int8", int8=True)  # doctest: +SKIP
    """
    import torch

    from .export import check_model_folder
    from .pipeline import load_trained_model

    model_dir, out = Path(model_dir), Path(out)
    check_model_folder(model_dir)
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / INFO_FILE).is_file())):
        raise ValueError(f"ONNX export target {str(out)!r} exists and is not an earlier ONNX export; remove it or "
                         "pick another folder")
    model = load_trained_model(model_dir).to("cpu").float().eval()
    config = model.config
    if config.input_mode != "text":
        raise ValueError(f"{model_dir} is an embedding-mode model: ONNX export covers text-mode models only "
                         "(the sentence encoder would need its own graph). Serve it with PyTorch.")
    if config.prompt != "plain":  # OnnxEmoClassifier feeds the texts as they are: the template is applied in Python
        raise ValueError(f"{model_dir} reads its texts through prompt={config.prompt!r}: ONNX export covers "
                         "prompt='plain' models only. Serve it with PyTorch, or train with --prompt plain.")
    if model.tokenizer is None:
        raise FileNotFoundError(f"{model_dir} has no tokenizer files: save the model again with its tokenizer.")
    sample = model.tokenize(CHECK_TEXTS)
    input_names = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in sample]
    axes = {name: {0: "batch", 1: "sequence"} for name in input_names}
    axes["logits"] = {0: "batch"}
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-emo-onnx-{out.name}-", dir=out.parent))
    try:
        fp32 = staging / ("model-fp32.onnx" if int8 else ONNX_FILE)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                # The TorchScript exporter's deprecation notice and the tracer's "treated as a constant" notes (on
                # shape checks that the tokenizer's own truncation makes constant) say nothing actionable here.
                warnings.simplefilter("ignore", category=DeprecationWarning)
                warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
                torch.onnx.export(_logits_module(model, input_names), tuple(sample[n] for n in input_names),
                                  str(fp32), input_names=input_names, output_names=["logits"],
                                  dynamic_axes=axes, opset_version=opset, dynamo=False)
        except Exception as error:  # tracing limits differ per architecture: say which and why
            raise RuntimeError(f"ONNX export of the {config.backbone_config.model_type!r} backbone failed "
                               f"({type(error).__name__}: {str(error)[:300]}). Encoder backbones (bert, mpnet, "
                               "roberta, ...) are supported; serve this model with PyTorch.") from error
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            # Dynamic quantisation: int8 weights, activations quantised per batch at run time (no calibration set).
            # per_channel: one scale per output channel; on MiniLM it halved the probability error of per-tensor.
            quantize_dynamic(str(fp32), str(staging / ONNX_FILE), weight_type=QuantType.QInt8, per_channel=True)
            fp32.unlink()
        model.tokenizer.save_pretrained(str(staging))
        for name in ("config.json", "thresholds.json"):
            shutil.copy2(model_dir / name, staging / name)
        with torch.no_grad():
            reference = model.predict_proba(CHECK_TEXTS)
        got = OnnxEmoClassifier(staging).predict_proba(CHECK_TEXTS)
        difference = float(np.abs(got - reference).max())
        if not int8 and difference > FP32_TOLERANCE:
            raise RuntimeError(f"The exported graph's probabilities differ from PyTorch's by {difference:.2e} "
                               f"(> {FP32_TOLERANCE}) on {len(CHECK_TEXTS)} check texts: not exported.")
        info = {"opset": opset, "int8": int8, "inputs": input_names, "outputs": ["logits"],
                "source": str(model_dir), "backbone": config.backbone_name_or_path,
                "max_abs_probability_difference_vs_pytorch": difference, "check_texts": len(CHECK_TEXTS)}
        (staging / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
        if out.exists():
            previous = out.with_name(f".tmp-emo-onnx-old-{out.name}-{os.getpid()}")
            os.replace(out, previous)
            os.replace(staging, out)
            shutil.rmtree(previous, ignore_errors=True)
        else:
            os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("ONNX export (%s) written to %s; max probability difference to PyTorch %.2e",
                "int8" if int8 else "float32", out, difference)
    return out
