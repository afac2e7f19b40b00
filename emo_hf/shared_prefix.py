"""The instruction prompt's shared prefix, run once per batch instead of once per row.

    from emo_hf.shared_prefix import plan_shared_prefix, mark_shared_prefix
    prefix, info = plan_shared_prefix(model)         # token ids every formatted text begins with, and why / why not
    batch = mark_shared_prefix(collated_batch, prefix)   # adds shared_prefix_length=P when every row begins so

or `emo-hf train --shared-prefix` (a decoder with `prompt='instruction'`), recorded in training_info.json
("shared_prefix"). Off by default: exact, fewer tokens and less memory, but not faster end to end where measured
(H200, 2026-12-03, Qwen2.5-0.5B's preset: 93.5 s warm, 52.6 ms median step, against 71.7-77.6 s for whole rows in
earlier leases; same quality; docs/benchmarks.md, "The shared prefix as one packed call").

Why: with Qwen2.5's chat template every GoEmotions row reads `<|im_start|>system ... <|im_end|> <|im_start|>user
Which emotions does this text express?` before its text: 30 identical tokens of ~58 per padded row, computed again
for every row. Under causal attention those positions never see a later token, so their keys and values are the same
in every row: `EmoModelForMultiLabel.forward(..., shared_prefix_length=P)` runs them once and lets every row's own
tokens attend to that one copy. The logits and the gradients are those of the whole rows (tests/test_shared_prefix.py
checks both against the plain forward); the projections and MLPs then see about half the tokens.

How (emo_hf/modeling_shared_prefix.py, `packed_inputs`, `shared_prefix_attention`: the model's remote code, which
must not import emo_hf): the batch [B, P + L] becomes one packed sequence [1, P + B*L] (the prefix once, then each
row's own L tokens), with each row's positions continuing at P, and goes through the backbone's own forward in one
call; only attention differs, through an attention function registered with transformers for that call: the prefix attends
causally to itself, each row's tokens to the prefix and causally to their own tokens. So a step is still one call
of the compiled layer loop (`--compile-scope stack`), one CUDA graph per batch shape. The first version (2026-12-02)
ran the prefix and the rows as two backbone calls joined by a key/value cache and was 2x slower per step on the H200
under CUDA graphs (docs/benchmarks.md, "The shared prefix"): two graphs and eager cache work between them.

Only for what it is exact and tested on: a decoder (not an encoder: its attention looks both ways), text mode,
every layer full causal attention (a sliding window would need its own mask), no attention dropout, no gradient
checkpointing, and not Unsloth's patched forward. The batch is checked on the CPU in the collator, where it costs no
GPU sync: a batch whose rows do not all begin with the prefix (a text that starts with the characters the template
ends with merges with them into other tokens) runs whole, as before. Training only: prediction reads whole rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Texts that begin differently (a letter, a space, a newline, a digit, punctuation): the formatted texts' longest
# common token prefix is then the template's, not some text's first word.
_PROBES = ("a", "Hello there", " x", "\n\nwhat", "1.", "¿Qué?", "!!")


def skip_reason(model, gradient_checkpointing: bool = False) -> str | None:
    """Why the shared prefix does not apply to this classifier, or None."""
    config = model.config
    if config.input_mode != "text":
        return "embedding mode (no prompt tokens)"
    if config.prompt != "instruction":
        return f"prompt={config.prompt!r} (only the instruction prompt begins every row with the same tokens)"
    if config.is_encoder_backbone:
        return "an encoder backbone (its attention reads later tokens too)"
    if "_unsloth_model" in vars(model):
        return "the backbone was loaded through Unsloth (its patched forward is not checked with the packed batch)"
    if gradient_checkpointing or getattr(model.backbone, "is_gradient_checkpointing", False):
        return "gradient checkpointing is on (not checked with the packed batch)"
    text_config = model.backbone.config.get_text_config()
    if getattr(text_config, "attention_dropout", 0.0):
        return f"attention dropout {text_config.attention_dropout} (the packed attention has none)"
    kinds = set(getattr(text_config, "layer_types", None) or ["full_attention"])
    if kinds != {"full_attention"}:
        return f"layers of kinds {sorted(kinds)} (only full causal attention is exact when packed)"
    window = getattr(text_config, "sliding_window", None)
    windowed = text_config.to_dict().get("use_sliding_window", window is not None)
    if windowed and window is not None and window < model.config.max_length:
        # A window at least max_length long (Mistral 7B's 4,096 at 128 tokens) never hides a token: full attention.
        return f"a sliding attention window of {window} tokens, shorter than max_length={model.config.max_length}"
    return None


def prefix_token_ids(model) -> list[int]:
    """The token ids that every text begins with once formatted and tokenized as in training (`model.tokenize`'s
    prompt, the tokenizer's special tokens): the longest common prefix over texts that begin differently."""
    tokenizer = model.tokenizer
    rows = tokenizer(model.format_texts(_PROBES), truncation=False)["input_ids"]
    common = list(rows[0])
    for ids in rows[1:]:
        n = 0
        while n < min(len(common), len(ids)) and common[n] == ids[n]:
            n += 1
        common = common[:n]
    return [int(i) for i in common]


def plan_shared_prefix(model, enabled: bool = True, gradient_checkpointing: bool = False
                       ) -> tuple[list[int], dict[str, Any]]:
    """(prefix token ids, or [] when not used; the record for training_info.json)."""
    if not enabled:
        return [], {"skipped": "not asked for (--shared-prefix turns it on)"}
    reason = skip_reason(model, gradient_checkpointing)
    if reason is None and model.tokenizer is None:
        reason = "no tokenizer attached"
    if reason:
        return [], {"skipped": reason}
    prefix = prefix_token_ids(model)
    if len(prefix) < 2:
        return [], {"skipped": f"the formatted texts share only {len(prefix)} token(s)"}
    return prefix, {"tokens": len(prefix)}


def mark_shared_prefix(batch: dict[str, Any], prefix: Sequence[int]) -> dict[str, Any]:
    """`batch` (right-padded CPU tensors) with `shared_prefix_length` = len(prefix) when every row begins with
    `prefix`, attended, and has at least one attended token after it (the one the classifier pools); unchanged
    otherwise. A plain int, not a tensor: reading it costs the GPU no sync."""
    if not prefix:
        return batch
    import torch

    ids, mask = batch["input_ids"], batch["attention_mask"]
    width = len(prefix)
    if ids.shape[1] <= width:
        return batch
    expected = torch.as_tensor(list(prefix), dtype=ids.dtype)
    begins = bool((ids[:, :width] == expected).all()) and bool(mask[:, :width].bool().all())
    if begins and bool((mask.sum(dim=1) > width).all()):
        batch["shared_prefix_length"] = width
    return batch

