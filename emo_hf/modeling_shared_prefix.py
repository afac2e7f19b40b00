"""The instruction prompt's shared prefix, run once per batch: one packed backbone call and its attention function.

    out = backbone_with_shared_prefix(model.backbone, input_ids, attention_mask, prefix)   # ([B, L - P, hidden],)

Training only: emo_hf.shared_prefix decides when a batch qualifies (and its collator marks it);
tests/test_shared_prefix.py checks the logits and gradients against whole rows. Part of a saved model's remote code
(copied next to modeling.py, emo_hf.modeling_files.REMOTE_CODE_FILES), so it imports nothing from emo_hf.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# The attention function's name in transformers' registry
# (AttentionInterface), set on the backbone's config only for the duration of a packed call
# (backbone_with_shared_prefix below): every other call keeps the backbone's own attention.
PACKED_ATTENTION = "emo_shared_prefix"


def packed_inputs(input_ids, attention_mask, prefix: int):
    """A right-padded batch [B, P + L] whose rows all begin with the same P tokens, packed for one backbone call:
    (input_ids [1, P + B*L]: the prefix once, then each row's L own tokens; position_ids [1, P + B*L]: 0..P-1, then
    P..P+L-1 for every row; mask [B, 1, L, P + L] bool: row b's query i sees the whole prefix and its own tokens j <= i
    that are not padding)."""
    rows, width = input_ids.shape
    own = width - prefix
    device = input_ids.device
    ids = torch.cat([input_ids[0, :prefix], input_ids[:, prefix:].reshape(-1)]).unsqueeze(0)
    positions = torch.arange(width, device=device)
    position_ids = torch.cat([positions[:prefix], positions[prefix:].repeat(rows)]).unsqueeze(0)
    causal = torch.ones(own, own, dtype=torch.bool, device=device).tril()  # [L, L]
    own_keys = attention_mask[:, prefix:].bool()  # [B, L]
    mask = torch.cat([torch.ones(rows, own, prefix, dtype=torch.bool, device=device),
                      causal.unsqueeze(0) & own_keys.unsqueeze(1)], dim=2).unsqueeze(1)  # [B, 1, L, P + L]
    return ids, position_ids, mask


def shared_prefix_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                             shared_prefix_mask=None, **kwargs):
    """Attention over a packed batch (`packed_inputs`), in transformers' attention-function signature: query [1, H,
    P + B*L, d], key / value [1, H_kv, P + B*L, d] (rotary already applied) -> ([1, P + B*L, H, d], None). Without
    `shared_prefix_mask` (an unpacked call) it is transformers' SDPA attention."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if shared_prefix_mask is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    rows, own, width = shared_prefix_mask.shape[0], shared_prefix_mask.shape[2], shared_prefix_mask.shape[3]
    prefix = width - own
    groups = query.shape[1] // key.shape[1]
    if groups > 1:  # grouped-query attention: each key/value head serves `groups` query heads
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)

    def per_row(x):  # [1, H, B*L, d] -> [B, H, L, d]
        return x.unflatten(2, (rows, own)).squeeze(0).transpose(0, 1)

    ahead = F.scaled_dot_product_attention(query[:, :, :prefix], key[:, :, :prefix], value[:, :, :prefix],
                                           is_causal=True, scale=scaling)  # [1, H, P, d]
    keys = torch.cat([key[:, :, :prefix].expand(rows, -1, -1, -1), per_row(key[:, :, prefix:])], dim=2)
    values = torch.cat([value[:, :, :prefix].expand(rows, -1, -1, -1), per_row(value[:, :, prefix:])], dim=2)
    own_out = F.scaled_dot_product_attention(per_row(query[:, :, prefix:]), keys, values,
                                             attn_mask=shared_prefix_mask, scale=scaling)  # [B, H, L, d]
    out = torch.cat([ahead, own_out.transpose(0, 1).flatten(1, 2).unsqueeze(0)], dim=2)  # [1, H, P + B*L, d]
    return out.transpose(1, 2).contiguous(), None


def register_packed_attention() -> str:
    """Register `shared_prefix_attention` with transformers under `PACKED_ATTENTION` (idempotent)."""
    from transformers import AttentionInterface

    AttentionInterface.register(PACKED_ATTENTION, shared_prefix_attention)
    return PACKED_ATTENTION


def backbone_with_shared_prefix(backbone, input_ids: torch.Tensor, attention_mask: torch.Tensor, prefix: int):
    """The decoder's output for the rows' own tokens, as a 1-tuple ([batch, seq - prefix, hidden],), the shared
    first `prefix` tokens (the instruction prompt's template and question: 30 of Qwen2.5's ~58 tokens per
    GoEmotions row) computed once for the batch. Exact under causal attention (no token before position `prefix`
    sees a later one, so the prefix is the same in every row): the batch goes through the backbone as one packed
    sequence, the prefix once and then every row's own tokens (`packed_inputs`), with `shared_prefix_attention`
    (the rows read the prefix's keys and values; gradients reach the prefix summed over the rows)."""
    rows, width = input_ids.shape
    ids, position_ids, mask = packed_inputs(input_ids, attention_mask, prefix)  # [1,P+BL] [1,P+BL] [B,1,L,P+L]
    config = backbone.config
    own_attention = config._attn_implementation
    config._attn_implementation = register_packed_attention()  # for this call only; not saved in config.json
    try:
        out = backbone(input_ids=ids, position_ids=position_ids, attention_mask=None, use_cache=False,
                       shared_prefix_mask=mask)
    finally:
        config._attn_implementation = own_attention
    return (out[0][0, prefix:].unflatten(0, (rows, width - prefix)),)  # [B, L, hidden]
