"""A sentence-transformers encoder run by onnxruntime on the CPU: the same vectors, several times the texts/s.

    >>> from emo_hf.data.onnx_encoder import OnnxSentenceEncoder
    >>> encoder = OnnxSentenceEncoder("sentence-transformers/all-MiniLM-L6-v2")   # exports once, then reuses the file
    >>> encoder.encode(["I love it", "so scared"]).shape                          # float32 [2, 384]

`emo_hf.data.embedding.embed_texts` uses this on a CPU (`backend="onnx"`); its cache keeps these vectors apart from
the PyTorch ones. The whole sentence-transformers pipeline (transformer, pooling, normalisation) is exported as one
float32 graph with `torch.onnx.export`, so the vectors equal the PyTorch ones up to float rounding (tests/
test_onnx_encoder.py checks this on real GoEmotions texts; docs/benchmarks.md has the speed, "CPU main job").

Why not sentence-transformers' own `backend="onnx"`: it needs `optimum-onnx`, whose releases pin transformers < 4.58
(this project needs 5.17), so it cannot be installed next to it. torch's exporter and onnxruntime are enough here.
Why not int8 (`onnxruntime.quantization.quantize_dynamic`): measured on GoEmotions it moved the vectors too far
(cosine to the float32 vectors 0.946 on average, 0.75 at worst, per-tensor; 0.989 / 0.93 per-channel), which would
change the ISMOTE rows and the embedding baseline; the float32 graph already gives most of the speed.

The exported file lives in `$EMO_HF_CACHE/embeddings/onnx-exports/<encoder key>/` (default `~/.cache/emo_hf/...`),
written to a temporary name and renamed into place, named by the encoder, the opset and the torch version.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

OPSET = 17
OUTPUT = "sentence_embedding"


def onnx_cache_dir() -> Path:
    """Where exported graphs go by default: `onnx-exports/` in the embedding cache (`emo_hf.data.embedding`)."""
    from .embedding import ONNX_EXPORTS, default_cache_dir

    return default_cache_dir() / ONNX_EXPORTS


def onnxruntime_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


class _Exported:
    """The sentence-transformers forward pass as a function of plain tensors, for torch.onnx.export."""

    def __init__(self, model, names: list[str]):
        import torch

        class Wrapper(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, *tensors):
                return self.model(dict(zip(names, tensors)))[OUTPUT]

        self.module = Wrapper().eval()


def _tensor_features(features: dict) -> dict:
    import torch

    return {name: value for name, value in features.items() if isinstance(value, torch.Tensor)}


class OnnxSentenceEncoder:
    """`encode(texts)` like `SentenceTransformer.encode`, through an exported float32 ONNX graph on onnxruntime.

    `model`: a loaded `SentenceTransformer` (tokenizer and the weights to export), or None to load `encoder` on the
    CPU. `threads`: onnxruntime's intra-op threads (default: torch's thread count, i.e. the cores).
    """

    def __init__(self, encoder: str, model=None, cache_dir: str | os.PathLike | None = None, threads: int | None = None):
        import onnxruntime
        import torch

        from .embedding import encoder_key, load_encoder

        self.encoder = encoder
        self.model = model if model is not None else load_encoder(encoder, device="cpu")
        folder = (Path(cache_dir).expanduser() if cache_dir is not None else onnx_cache_dir()) / encoder_key(encoder)
        tag = hashlib.sha1(f"{OPSET}-{torch.__version__}".encode()).hexdigest()[:8]
        self.path = folder / f"model-opset{OPSET}-{tag}.onnx"
        self.names = list(_tensor_features(self.model.preprocess(["a", "a longer text"])))
        if not self.path.is_file():
            self._export(folder)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        # No busy-waiting between kernels: on a 2-core machine the spinning threads take the cores from the tokenizer
        # and from other processes; measured faster with it off (docs/benchmarks.md, "CPU main job").
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def _export(self, folder: Path) -> None:
        import torch

        folder.mkdir(parents=True, exist_ok=True)
        example = _tensor_features(self.model.preprocess(["a", "a longer example text"]))
        module = _Exported(self.model.cpu(), self.names).module
        handle, temporary = tempfile.mkstemp(dir=folder, suffix=".onnx.tmp")
        os.close(handle)
        import warnings

        try:
            # the tracer warns about shape checks and index ops it freezes; tests/test_onnx_encoder.py checks the
            # exported graph's vectors against PyTorch's on real texts of every length instead
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # the TorchScript exporter (dynamo=False): it needs no onnxscript, and traces this graph exactly
                torch.onnx.export(
                    module, tuple(example[n] for n in self.names), temporary, input_names=self.names,
                    output_names=[OUTPUT], opset_version=OPSET, dynamo=False,
                    dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in self.names}, OUTPUT: {0: "batch"}},
                )
            os.replace(temporary, self.path)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
        logger.info("exported %s to %s", self.encoder, self.path)

    def encode(self, texts: Sequence[str], batch_size: int = 64, show_progress_bar: bool = False,
               convert_to_numpy: bool = True, **_ignored) -> np.ndarray:
        """float32 [len(texts), dim]. Texts are batched longest first (as sentence-transformers does), so a batch
        pads to lengths close to its own; the result is in the order given."""
        from tqdm.auto import tqdm

        texts = [str(t) for t in texts]
        order = np.argsort([-len(t) for t in texts], kind="stable")
        chunks: list[np.ndarray] = []
        for start in tqdm(range(0, len(texts), batch_size), desc="Embedding (onnxruntime)", unit="batch",
                          disable=not show_progress_bar):
            features = _tensor_features(self.model.preprocess([texts[i] for i in order[start:start + batch_size]]))
            feed = {name: features[name].numpy() for name in self.inputs}
            chunks.append(self.session.run([OUTPUT], feed)[0].astype(np.float32, copy=False))
        if not chunks:
            return np.zeros((0, self.model.get_sentence_embedding_dimension() or 0), dtype=np.float32)
        vectors = np.empty((len(texts), chunks[0].shape[1]), dtype=np.float32)
        vectors[order] = np.concatenate(chunks)
        return vectors
