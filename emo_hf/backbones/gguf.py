"""GGUF checkpoints -> a plain bf16 Hugging Face folder, converted once into the emo_hf cache and then always reused.

    >>> from emo_hf.backbones.gguf import converted_folder
    >>> converted_folder("/models", "qwen2.5-coder-0.5b-instruct.gguf")
    PosixPath('/root/.cache/emo_hf/gguf/1d9614638d18024d-qwen2.5-coder-0.5b-instruct')

Why: transformers dequantises a GGUF on every load (about 2.5 min for a 0.5B model on a 2-core CPU; the converted
folder reloads in seconds) and leaves a GGUF "quantizer" attached to the model that blocks `save_pretrained`, the
Trainer and Unsloth (which wants a folder anyway). The conversion loads the GGUF once with `gguf_file=`, detaches
that quantizer (`model.hf_quantizer = None`, `del config.quantization_config`: the weights are plain bf16 by
then), gives the tokenizer its family's pad token (emo_hf.backbones.families; a new token gets its embedding row
here, before anything is quantised), and saves model + tokenizer to a temporary folder renamed into
`cache_dir()/gguf/<sha256[:16]>-<name>`. The key is the file's content hash, so a changed file converts again.

Gemma 3: transformers 5.17 builds the Gemma tokenizer of a GGUF as a Unigram model over SentencePiece-BPE scores
("I can't" -> "I ▁c an ' t") with no BOS. `gemma_tokenizer_from_gguf` rebuilds it from the GGUF's own vocabulary
as the byte-fallback BPE it is (merges ordered by the merged piece's score, as sentencepiece applies them).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from .resolve import cache_dir, file_sha256

logger = logging.getLogger(__name__)

SOURCE_FILE = "emo_hf_gguf_source.json"  # written last into a converted folder: what it was converted from
# Model types whose GGUF tokenizer transformers 5.17 builds wrongly (see the module docstring).
GEMMA_TYPES = ("gemma", "gemma2", "gemma3", "gemma3_text")


def gguf_sha256(path: Path) -> str:
    """The file's sha256: from the `<file>.sha256` that emo_hf.backbones.resolve wrote next to a joined copy (it
    checked the hash while joining), else from a memo keyed by path, size and mtime, else computed and memoised."""
    sidecar = path.with_name(path.name + ".sha256")
    if sidecar.is_file() and cache_dir() in path.resolve().parents:
        return sidecar.read_text().split()[0]
    memo_file = cache_dir() / "gguf" / "sha256-memo.json"
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    memo = {}
    if memo_file.is_file():
        try:
            memo = json.loads(memo_file.read_text())
        except ValueError:
            memo = {}
    if key not in memo:
        memo[key] = file_sha256(path)
        memo_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_file.with_name(f".{memo_file.name}.{os.getpid()}")
        tmp.write_text(json.dumps(memo, indent=1))
        os.replace(tmp, memo_file)
    return memo[key]


def gguf_model_type(path: Path) -> str:
    """`general.architecture` from the GGUF header (read with the `gguf` package, no tensors loaded)."""
    from gguf import GGUFReader

    return str(GGUFReader(str(path)).fields["general.architecture"].contents())


def converted_folder(folder: str, gguf_file: str) -> Path:
    """The bf16 folder converted from `folder/gguf_file` (converting it on first use; see the module docstring)."""
    path = Path(folder) / gguf_file
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file {str(path)!r} not found: check the backbone path.")
    digest = gguf_sha256(path)
    target = cache_dir() / "gguf" / f"{digest[:16]}-{path.stem}"
    if (target / SOURCE_FILE).is_file():
        return target
    logger.warning("Converting %s to a bf16 folder in %s (once; later loads reuse it).", path, target)
    print(f"emo_hf: converting {path.name} to a bf16 folder in {target} (once; later loads reuse it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _convert(path, tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the finished folder gets the usual permissions
        (tmp / SOURCE_FILE).write_text(json.dumps({"gguf_file": str(path), "sha256": digest}, indent=2) + "\n")
        try:
            os.replace(tmp, target)
        except OSError:  # another process converted it meanwhile: keep theirs
            if not (target / SOURCE_FILE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert(path: Path, out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    from .families import prepare_tokenizer

    folder, name = str(path.parent), path.name
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    try:  # the causal-LM class keeps the checkpoint usable by Unsloth and generation; encoders have none
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.bfloat16)
    except ValueError:
        model = AutoModel.from_pretrained(folder, gguf_file=name, dtype=torch.bfloat16)
    # Detach the GGUF quantizer: the weights are dequantised already, and it blocks save_pretrained / training.
    model.hf_quantizer = None
    for cfg in {id(model.config): model.config, id(model.config.get_text_config()): model.config.get_text_config()
                }.values():
        if hasattr(cfg, "quantization_config"):
            del cfg.quantization_config
    tokenizer = load_gguf_tokenizer(folder, name, config.model_type)
    choice = prepare_tokenizer(tokenizer, config.get_text_config().model_type)
    rows = model.get_input_embeddings().weight.shape[0]
    if choice.added and tokenizer.pad_token_id >= rows:
        # Before any quantisation: the new row is a plain bf16 vector here.
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    text_config = model.config.get_text_config()
    text_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def load_gguf_tokenizer(folder: str, gguf_file: str, model_type: str | None = None):
    """The tokenizer of a GGUF file; Gemma's rebuilt from the GGUF vocabulary (see the module docstring)."""
    path = Path(folder) / gguf_file
    model_type = model_type or gguf_model_type(path)
    if model_type in GEMMA_TYPES:
        return gemma_tokenizer_from_gguf(path)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)


def gemma_tokenizer_from_gguf(path: str | os.PathLike):
    """A GemmaTokenizer (byte-fallback BPE, `<bos>` first) built from a Gemma GGUF's vocabulary, scores and token
    types. Token types (llama.cpp): 1 normal, 3 control (special added tokens), 4 user-defined (always matched whole,
    so merged first), 6 byte (`<0xNN>`, the byte fallback)."""
    from gguf import GGUFReader
    from tokenizers import AddedToken
    from transformers.convert_slow_tokenizer import generate_merges
    from transformers.models.gemma.tokenization_gemma import GemmaTokenizer

    reader = GGUFReader(str(path))
    fields = reader.fields
    if str(fields["tokenizer.ggml.model"].contents()) != "llama":
        raise ValueError(f"{path}: a Gemma GGUF with tokenizer model {fields['tokenizer.ggml.model'].contents()!r} "
                         "(expected 'llama', SentencePiece): emo_hf cannot rebuild its tokenizer. Use the Hub "
                         "checkpoint's own tokenizer folder instead.")
    tokens = fields["tokenizer.ggml.tokens"].contents()
    scores = fields["tokenizer.ggml.scores"].contents()
    types = fields["tokenizer.ggml.token_type"].contents()
    if not len(tokens) == len(scores) == len(types):
        raise ValueError(f"{path}: the GGUF vocabulary is inconsistent ({len(tokens)} tokens, {len(scores)} scores, "
                         f"{len(types)} types): the file is damaged.")
    names: list[str] = []
    for token in tokens:
        # The GGUF writes runs of the SentencePiece space "▁" as real spaces; the tokenizer normalises " " to "▁".
        names.append("▁" * len(token) if token and not token.strip(" ") else token)
    vocab = {name: i for i, name in enumerate(names)}
    if len(vocab) != len(names):
        raise ValueError(f"{path}: the GGUF vocabulary has duplicate tokens: cannot rebuild the Gemma tokenizer.")
    control = [n for n, t in zip(names, types) if t == 3]
    merge_scores = [(n, 0.0 if t == 4 else float(s)) for n, s, t in zip(names, scores, types) if t in (1, 4)]
    merges = generate_merges(vocab, merge_scores, skip_tokens=set(control))
    ids = {key: int(fields[f"tokenizer.ggml.{key}_token_id"].contents()) for key in ("bos", "eos", "unknown",
                                                                                    "padding")
           if f"tokenizer.ggml.{key}_token_id" in fields}
    tokenizer = GemmaTokenizer(vocab=vocab, merges=merges, bos_token=names[ids.get("bos", 2)],
                               eos_token=names[ids.get("eos", 1)], unk_token=names[ids.get("unknown", 3)],
                               pad_token=names[ids.get("padding", 0)], add_bos_token=True, add_eos_token=False)
    tokenizer.add_tokens([AddedToken(n, special=True, normalized=False) for n in control], special_tokens=True)
    if "tokenizer.chat_template" in fields:
        tokenizer.chat_template = str(fields["tokenizer.chat_template"].contents())
    return tokenizer
