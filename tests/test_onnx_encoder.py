"""The onnx embedding backend (emo_hf.data.onnx_encoder): same vectors as PyTorch on real texts, its own cache."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from goemotions_path import SKIP_REASON, goemotions_dir

pytest.importorskip("onnxruntime")

from emo_hf.data import embedding as embedding_module  # noqa: E402

# Stated tolerance: float32 graph vs PyTorch float32 on unit-length vectors. Measured max |diff| is ~1e-7; a wrong
# pooling, a missing normalisation or rows out of order would be off by 1e-2 or more.
ATOL = 1e-5


@pytest.fixture(scope="module")
def real_texts():
    folder = goemotions_dir()
    if folder is None:
        pytest.skip(SKIP_REASON)
    with open(folder / "dev.tsv", encoding="utf-8", newline="") as handle:
        texts = [row[0] for row in csv.reader(handle, delimiter="\t")]
    by_length = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    # the longest texts (truncation, big padding), the shortest, and a file-order run; not sorted, so the encoder's
    # own length sort and order restore are exercised
    picked = by_length[-20:] + by_length[:20] + list(range(0, 80))
    return [texts[i] for i in dict.fromkeys(picked)]


@pytest.fixture(scope="module")
def torch_encoder():
    return embedding_module.load_encoder(device="cpu")


@pytest.fixture(scope="module")
def onnx_encoder(torch_encoder, tmp_path_factory):
    from emo_hf.data.onnx_encoder import OnnxSentenceEncoder

    return OnnxSentenceEncoder(embedding_module.DEFAULT_ENCODER, model=torch_encoder,
                               cache_dir=tmp_path_factory.mktemp("onnx-exports"))


def test_onnx_vectors_equal_torch_vectors_on_real_texts(real_texts, torch_encoder, onnx_encoder):
    reference = torch_encoder.encode(real_texts, batch_size=64, convert_to_numpy=True)
    vectors = onnx_encoder.encode(real_texts, batch_size=16)
    assert vectors.shape == reference.shape == (len(real_texts), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, reference, atol=ATOL, rtol=0)
    # the batch size and the position in the list do not change a text's vector
    np.testing.assert_allclose(onnx_encoder.encode(real_texts[::-1][:7], batch_size=3), vectors[::-1][:7], atol=ATOL, rtol=0)


def test_the_export_is_reused(onnx_encoder, torch_encoder, monkeypatch):
    import torch

    from emo_hf.data.onnx_encoder import OnnxSentenceEncoder

    def no_export(*args, **kwargs):
        raise AssertionError("exported again although the file exists")

    monkeypatch.setattr(torch.onnx, "export", no_export)
    again = OnnxSentenceEncoder(embedding_module.DEFAULT_ENCODER, model=torch_encoder, cache_dir=onnx_encoder.path.parent.parent)
    assert again.path == onnx_encoder.path


def test_cache_keys_differ_by_backend(real_texts, torch_encoder, onnx_encoder, tmp_path):
    encoder = embedding_module.DEFAULT_ENCODER
    assert embedding_module.encoder_key(encoder, "onnx") != embedding_module.encoder_key(encoder, "torch")
    texts = real_texts[:5]
    # a torch-cache entry holding a wrong vector: the onnx backend must not serve it
    zeros = np.zeros((len(texts), 384), dtype=np.float32)
    embedding_module._write_shard(tmp_path / embedding_module.encoder_key(encoder, "torch"),
                                  [embedding_module.text_key(t) for t in texts], zeros)
    from_torch_cache = embedding_module.embed_texts(texts, cache_dir=tmp_path, backend="torch", model=object(),
                                                    show_progress=False)
    np.testing.assert_array_equal(from_torch_cache, zeros)  # served from the torch cache, model never called
    from_onnx = embedding_module.embed_texts(texts, cache_dir=tmp_path, model=onnx_encoder, show_progress=False)
    np.testing.assert_allclose(from_onnx, torch_encoder.encode(texts, convert_to_numpy=True), atol=ATOL, rtol=0)
    assert list((tmp_path / embedding_module.encoder_key(encoder, "onnx")).glob("*.npz"))


def test_backend_choice(monkeypatch):
    import torch

    monkeypatch.delenv("EMO_HF_EMBED_BACKEND", raising=False)
    assert embedding_module.resolve_backend() == ("torch" if torch.cuda.is_available() else "onnx")
    monkeypatch.setenv("EMO_HF_EMBED_BACKEND", "torch")
    assert embedding_module.resolve_backend() == "torch"
    assert embedding_module.resolve_backend("onnx") == "onnx"
    monkeypatch.setenv("EMO_HF_EMBED_BACKEND", "int4")
    with pytest.raises(ValueError, match="EMO_HF_EMBED_BACKEND=torch"):
        embedding_module.resolve_backend()
