"""What a trained EmoModelForMultiLabel offers for raw texts: checking them, the prompt, tokenizing as training did,
sentence vectors (embedding mode), probabilities and labels. A mixin of the model class (modeling.py), in a file of
its own so the classifier's file stays the network; copied next to saved models like its neighbours
(modeling_files.REMOTE_CODE_FILES), so it imports only them.

    >>> model.predict_proba(["I love it", "So sad"])   # [2, num_labels], rows in the order given
    >>> model.predict(["I love it"], threshold_shift=-0.1)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

# Its siblings are imported inside the methods: inside emo_hf, configuration.py imports modeling.py (to register the
# model), which imports this file, so top-level imports here would be circular when this file is imported first.


class EmoPredictionMixin:
    """Text-in, probabilities-out methods; the model supplies config, tokenizer, _encoder, score, _warn_truncation."""

    # -- inputs --------------------------------------------------------------------------------------------------------
    @staticmethod
    def check_texts(texts: Sequence[str] | str) -> list[str]:
        """`texts` as a list, or a ValueError naming the first empty / None / non-string entry and its index."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise ValueError(f"texts[{i}] is {text!r} ({type(text).__name__}), not a string: pass a list of "
                                 "non-empty strings, e.g. model.predict(['I love it', 'So sad']).")
            if not text.strip():
                raise ValueError(f"texts[{i}] is empty ({text!r}): remove it or pass some words, e.g. "
                                 "model.predict(['I love it']).")
        return texts

    def format_texts(self, texts: Sequence[str]) -> list[str]:
        """The texts as the backbone reads them (config.prompt): as they are, or as a chat-template user turn
        "Which emotions does this text express?" + the text (a plain "Text: ... Emotions:" frame without a template)."""
        texts = list(texts)
        if self.config.prompt != "instruction":
            return texts
        from .configuration import PROMPT_QUESTION

        tokenizer = self.tokenizer
        if getattr(tokenizer, "chat_template", None):
            bos = tokenizer.bos_token or ""
            out = []
            for text in texts:
                wrapped = tokenizer.apply_chat_template([{"role": "user", "content": f"{PROMPT_QUESTION}\n\n{text}"}],
                                                        tokenize=False, add_generation_prompt=True)
                # The tokenizer adds its BOS itself: a template that writes it too would give two.
                out.append(wrapped[len(bos):] if bos and wrapped.startswith(bos) else wrapped)
            return out
        return [f"{PROMPT_QUESTION}\nText: {text}\nEmotions:" for text in texts]

    def tokenize(self, texts: Sequence[str] | str, return_tensors: str | None = "pt", padding: bool | str = True):
        """Tokenize (config.prompt applied; truncating to max_length, with one warning if any text is longer).
        A text of no tokens at all gets training's filler token (modeling_backbone.tokenize_for_prediction)."""
        if self.tokenizer is None:
            raise ValueError("This model has no tokenizer attached: set model.tokenizer = AutoTokenizer."
                             "from_pretrained(<backbone>) or load it with from_backbone / from_pretrained.")
        texts = self.format_texts(self.check_texts(texts))
        max_length = self.config.max_length
        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=False)["input_ids"]]
        too_long = [i for i, n in enumerate(lengths) if n > max_length]
        if too_long:
            self._warn_truncation(f"texts[{too_long[0]}] ({lengths[too_long[0]]} tokens)")
        from .modeling_backbone import tokenize_for_prediction

        return tokenize_for_prediction(self.tokenizer, texts, max_length, padding, return_tensors)

    def sentence_encoder(self):
        """The sentence-transformers encoder named in the config (embedding mode), loaded once, offline if possible."""
        if self._encoder is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as error:  # kept in try/except so trust_remote_code does not require it
                raise ImportError("Embedding-mode prediction needs sentence-transformers: "
                                  "pip install sentence-transformers") from error
            from .configuration import resolve_pretrained

            folder, _ = resolve_pretrained(self.config.encoder_name)
            self._encoder = SentenceTransformer(folder, device=str(self.score.weight.device))
        return self._encoder

    def embed(self, texts: Sequence[str] | str, batch_size: int = 32) -> np.ndarray:
        """Sentence vectors [n, encoder_dim] from the config's encoder (sentence-transformers `encode` defaults)."""
        texts = self.check_texts(texts)
        vectors = self.sentence_encoder().encode(texts, batch_size=batch_size, convert_to_numpy=True,
                                                 show_progress_bar=False)
        if vectors.shape[1] != self.config.encoder_dim:
            raise ValueError(f"The encoder {self.config.encoder_name!r} gives {vectors.shape[1]}-dim vectors but the "
                             f"model expects encoder_dim={self.config.encoder_dim}.")
        return vectors

    # -- prediction ----------------------------------------------------------------------------------------------------
    def auto_tokens_per_batch(self) -> int | None:
        """predict_proba's default token budget: None on a CPU (batches of `batch_size` rows, the measured best there);
        on a GPU as many tokens as a quarter of the free memory holds at one layer's forward activations per token
        (emo_hf.memory_plan's count, 2 x (10 x hidden + 4 x intermediate) bytes, restated here: a saved model's code
        cannot import emo_hf), between 2,048 and 65,536. Why: batches of 64 short texts left the GPU waiting (the real Qwen2.5-0.5B, H100: ~100 ms per batch of 64, 617 texts/s; docs/benchmarks.md)."""
        device = self.get_input_embeddings().weight.device
        if device.type != "cuda" or self.config.input_mode != "text":
            return None
        free_bytes, _ = torch.cuda.mem_get_info(device)
        config = getattr(self.backbone, "config", None)
        config = config.get_text_config() if hasattr(config, "get_text_config") else config
        intermediate = int(getattr(config, "intermediate_size", None) or 4 * self.hidden_size)
        per_token = 2 * (10 * self.hidden_size + 4 * intermediate)
        return int(min(65536, max(2048, 0.25 * free_bytes // per_token)))

    @torch.no_grad()
    def predict_proba(self, texts: Sequence[str] | str, batch_size: int = 32,
                      max_tokens_per_batch: int | str | None = "auto") -> np.ndarray:
        """Probabilities [len(texts), num_labels] in label order (`model.config.labels`), rows in the order given.

        Text mode batches the texts longest first (sorted by token count) and puts the rows back in order: batches of
        similar lengths carry little padding (1.50x the unsorted batches for the 24B shape on an H200,
        docs/benchmarks.md). `max_tokens_per_batch` (text mode): each batch takes as many rows as fit that many
        tokens at its longest row's length, instead of `batch_size` rows; "auto" = `auto_tokens_per_batch()` (a
        budget on a GPU, rows on a CPU); None = always `batch_size` rows.
        """
        texts = self.check_texts(texts)
        was_training = self.training
        self.eval()
        device = self.get_input_embeddings().weight.device
        n = len(texts)
        order = np.arange(n)
        spans = [(start, min(n, start + batch_size)) for start in range(0, n, batch_size)]
        if self.config.input_mode == "text" and self.tokenizer is not None and n > 1:
            lengths = np.asarray([len(ids) for ids in self.tokenizer(
                self.format_texts(texts), truncation=True, max_length=self.config.max_length)["input_ids"]])
            order = np.argsort(-lengths, kind="stable")
            budget = self.auto_tokens_per_batch() if max_tokens_per_batch == "auto" else max_tokens_per_batch
            if budget:
                spans = token_budget_batches(lengths[order], int(budget))
        chunks = []
        try:
            for start, end in spans:
                batch = [texts[i] for i in order[start:end]]
                if self.config.input_mode == "embedding":
                    vectors = torch.as_tensor(self.embed(batch, batch_size=batch_size), dtype=torch.float32)
                    logits = self(sentence_embeddings=vectors.to(device)).logits
                else:
                    encoded = self.tokenize(batch)
                    logits = self(**{k: v.to(device) for k, v in encoded.items()}).logits
                chunks.append(torch.sigmoid(logits.float()).cpu().numpy())
        finally:
            self.train(was_training)
        if not chunks:
            return np.zeros((0, self.config.num_labels), dtype=np.float32)
        sorted_probs = np.concatenate(chunks)
        probabilities = np.empty_like(sorted_probs)
        probabilities[order] = sorted_probs  # row k of the sorted batches is text order[k]
        return probabilities

    def predict(self, texts: Sequence[str] | str, batch_size: int = 32, threshold_shift: float = 0.0) -> list[dict]:
        """Per text: `{"labels": [names with probability >= threshold + shift], "probabilities": {name: p}}`.

            >>> model.predict(["I can't believe you did that!"], threshold_shift=-0.1)
        """
        probabilities = self.predict_proba(texts, batch_size=batch_size)
        labels = self.config.labels
        thresholds = np.clip(np.asarray(self.config.thresholds) + threshold_shift, 0.0, 1.0)
        return [{"labels": [labels[j] for j in np.flatnonzero(row >= thresholds)],
                 "probabilities": {name: float(p) for name, p in zip(labels, row)}} for row in probabilities]


def token_budget_batches(sorted_lengths: Sequence[int], max_tokens: int) -> list[tuple[int, int]]:
    """(start, end) row spans over lengths sorted longest first: each batch as many rows as fit `max_tokens` at its
    first (longest) row's length, at least one; every row in exactly one span, in order.

        >>> token_budget_batches([50, 40, 10, 10, 5], 100)
        [(0, 2), (2, 5)]
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens_per_batch={max_tokens!r} must be positive, e.g. 16384 (or None for row batches).")
    spans, start, n = [], 0, len(sorted_lengths)
    while start < n:
        end = min(n, start + max(1, max_tokens // max(1, int(sorted_lengths[start]))))
        spans.append((start, end))
        start = end
    return spans

