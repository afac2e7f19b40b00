"""Training with transformers' Trainer: best checkpoint on validation macro-F1, per-label thresholds, resume.

    from emo_hf.presets import get_preset
    from emo_hf.trainer import train
    result = train("runs/data", "runs/model", get_preset("minilm").replace(epochs=1))
    print(result.best_metric, result.model_dir)

or `emo-hf train --data runs/data --preset minilm --out runs/model`.

The output folder holds `checkpoints/` (one per epoch, Trainer's layout plus our model files) and `model/`, the best
checkpoint with validation-tuned thresholds, loadable with `AutoModel.from_pretrained`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import distributed
from .checkpoints import newest_complete_checkpoint
from .emo_trainer import NonFiniteLossError, make_trainer_class
from .presets import TrainSettings
from .training_data import (EmbeddingCollator, TextCollator, embedding_columns, load_splits, select_train_rows,
                            tokenize_splits)
from .training_record import (TRAINING_INFO_NAME, device_name, encoder_of, headline, peak_gpu_gib,
                              record_reload_check, save_trained_model, training_info)

__all__ = ["NonFiniteLossError", "TRAINING_INFO_NAME", "TrainResult", "build_model", "dataloader_workers", "train"]
logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    model_dir: Path
    best_checkpoint: str | None
    best_metric: float | None
    thresholds: list[float]
    train_seconds: float
    validation_metrics_at_05: dict[str, float]


def dataloader_workers(settings: TrainSettings) -> int:
    """Batch-building processes: settings.dataloader_workers, or 2 on a GPU and 0 on a CPU when unset. On a GPU a
    small decoder's step is bound by the host (docs/benchmarks.md), so the collator's work in the loop delays every
    step; on a CPU the worker would compete with training for the cores."""
    import torch

    if settings.dataloader_workers is not None:
        return settings.dataloader_workers
    return 2 if torch.cuda.is_available() else 0


def build_model(settings: TrainSettings, label_names: list[str], encoder: dict | None = None, plan=None):
    """The model for training from a preset's settings (LoRA/4-bit/Unsloth chosen by emo_hf.backbones; 4-bit and
    checkpointing left None are decided by `plan`, an emo_hf.memory_plan.MemoryPlan, made here when not given;
    `settings.compile` compiles its layers, emo_hf.backbones.compilation)."""
    from .backbones import load_for_training
    from .memory_plan import plan_for_settings
    from .tiny import resolve_backbone

    plan = plan or plan_for_settings(settings, resolve_backbone(settings.backbone))

    lora = None if not settings.lora_r else {"r": settings.lora_r, "lora_alpha": settings.lora_alpha, "lora_dropout": settings.lora_dropout}
    kwargs: dict[str, Any] = dict(
        focal_gamma=settings.focal_gamma,
        focal_alpha=settings.focal_alpha,
        classifier_dropout=settings.classifier_dropout,
        prompt=settings.prompt,
    )
    if settings.input_mode == "embedding":
        kwargs.update(num_soft_tokens=settings.num_soft_tokens, **(encoder or {}))
    model = load_for_training(
        resolve_backbone(settings.backbone),
        labels=label_names,
        input_mode=settings.input_mode,
        lora=lora,
        max_length=settings.max_length,
        load_in_4bit=plan.load_in_4bit,  # True on a CPU raises a clear error (4-bit needs bitsandbytes on a GPU)
        gradient_checkpointing=plan.gradient_checkpointing,
        offload_checkpointing=plan.offload_checkpointing,
        use_unsloth=_use_unsloth(settings),
        **kwargs,
    )
    if settings.compile:
        from .backbones.compilation import compile_layers, compile_skip_reason
        from .backbones.lean_lora import lean_lora_count

        skip = compile_skip_reason(model)
        if skip:
            print(f"emo_hf: --compile not applied: {skip}")
            model.compile_info = {"skipped": skip}
        else:
            precompile_dir = None
            if settings.precompile and settings.compile_scope == "stack":
                from .backbones.precompile import default_cache_dir

                precompile_dir = settings.compile_cache or default_cache_dir()
            model.compile_info = {"layers": compile_layers(model.backbone, scope=settings.compile_scope,
                                                           mode=settings.compile_mode, lean_lora=settings.lean_lora,
                                                           precompile_dir=precompile_dir),
                                  "mode": settings.compile_mode or "default", "scope": settings.compile_scope,
                                  "lean_lora_projections": lean_lora_count(model.backbone)}
            if precompile_dir is not None:  # the same dict the forward updates: what it did, at the run's end
                from .backbones.compilation import stack_owner

                model.compile_info["precompile"] = stack_owner(model.backbone).forward.precompiled.info
    return model


def _use_unsloth(settings: TrainSettings) -> bool | None:
    """load_for_training's `use_unsloth`: None = Unsloth when installed and the backbone is 4-bit (GPU, LoRA)."""
    if settings.unsloth is not True:
        return None if settings.unsloth is None else False
    import torch

    from .backbones.training import unsloth_available

    if not (torch.cuda.is_available() and unsloth_available()) or not settings.lora_r:
        raise ValueError("unsloth=True needs a CUDA GPU, LoRA (lora_r set) and Unsloth installed "
                         "(pip install 'emo-hf[gpu]'); leave it unset to use Unsloth only where it is available.")
    return True


def train(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    settings: TrainSettings,
    *,
    resume: bool = False,
    show_progress: bool = True,
    callbacks: list | None = None,
) -> TrainResult:
    """Train on `data_dir`, keep the best epoch by validation macro-F1, tune thresholds on validation, save `out/model`.

    `resume=True` continues from the newest complete checkpoint under `out/checkpoints` (model, optimiser,
    scheduler, RNG and data order), with the settings the run started with. `callbacks` are extra transformers
    `TrainerCallback`s. A run that fails before its first checkpoint leaves nothing behind (emo_hf.checkpoints).
    Under `torchrun` / `accelerate launch` every process calls this; `settings.batch_size` is split over them and
    rank 0 alone writes `out/model` (emo_hf.distributed).
    """
    from .checkpoints import cleanup_on_failure, prepare_train_out

    prepare_train_out(out_dir, resume=resume)  # before any work; removes a killed run's temp folders
    with cleanup_on_failure(out_dir):
        return _train(data_dir, out_dir, settings, resume=resume, show_progress=show_progress, callbacks=callbacks)


def _train(data_dir, out_dir, settings: TrainSettings, *, resume: bool, show_progress: bool,
           callbacks: list | None) -> TrainResult:
    import torch
    from transformers import EarlyStoppingCallback, TrainingArguments

    from .metrics import make_compute_metrics, multilabel_metrics, tune_thresholds

    out_dir = Path(out_dir)
    checkpoints = out_dir / "checkpoints"
    if resume:
        last = newest_complete_checkpoint(str(checkpoints))
        if last is None:
            raise FileNotFoundError(f"--resume: no checkpoint under {checkpoints}. Start without --resume.")
        saved = json.loads((out_dir / "train_settings.json").read_text()) if (out_dir / "train_settings.json").is_file() else None
        unknown = sorted(set(saved or {}) - {f.name for f in dataclasses.fields(TrainSettings)})
        if unknown:
            raise ValueError(f"--resume: {out_dir / 'train_settings.json'} has settings this emo_hf does not know "
                             f"({unknown}): the run was started by a newer emo_hf. Upgrade it "
                             "(pip install -U emo-hf) and resume again.")
        if saved is not None and "compile" not in saved and saved.get("unsloth") is True:
            saved["unsloth"] = None  # written before 2026-12-02, when unsloth=True meant "where installed" (now: unset)
        if saved is not None and saved != settings.to_dict():
            logger.warning("--resume: using the settings the run started with (%s), not the ones given now.", out_dir / "train_settings.json")
            settings = TrainSettings(**saved)
    elif newest_complete_checkpoint(str(checkpoints)) is not None:
        raise FileExistsError(
            f"{checkpoints} already holds checkpoints. Continue that run with --resume, or pick a new --out."
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    distributed.setup()  # under a launcher: join the process group, pin this rank to its GPU
    per_device_batch = distributed.per_device_batch_size(settings.batch_size)  # refuse before any file is written
    from .precision import resolve_bf16

    bf16, why_not_bf16 = resolve_bf16(settings.bf16)
    if why_not_bf16:
        print(f"emo_hf: --bf16 not applied: {why_not_bf16}")
        settings = dataclasses.replace(settings, bf16=bf16)  # what runs is what train_settings.json says
        if settings.float32_epochs is not None and settings.float32_epochs != settings.epochs:
            print(f"emo_hf: training {settings.float32_epochs:g} epoch(s) in float32 instead of {settings.epochs:g} "
                  f"(float32_epochs: float32 runs at about half the work rate); to train "
                  f"{settings.epochs:g}, pass --epochs {settings.epochs:g}.")
            settings = dataclasses.replace(settings, epochs=settings.float32_epochs)
    if distributed.is_main_process():
        (out_dir / "train_settings.json").write_text(json.dumps(settings.to_dict(), indent=2))

    distributed.enter_main_process_first()  # rank 0 fills the caches (tiny model, datasets' map files) first
    torch.manual_seed(settings.seed)
    if torch.cuda.is_available():
        # cuDNN's fused attention (PyTorch's first SDPA choice on Hopper) returned NaN LoRA gradients for padded text
        # batches on an H200 (torch 2.11, a Qwen2-shaped bf16 backbone), where the flash / memory-efficient / math
        # kernels gave finite ones on the same batch: train with those.
        torch.backends.cuda.enable_cudnn_sdp(False)
    splits, label_names = load_splits(data_dir, settings.input_mode)
    encoder = encoder_of(data_dir) if settings.input_mode == "embedding" else None
    from .memory_plan import plan_for_settings
    from .tiny import resolve_backbone

    plan = plan_for_settings(settings, resolve_backbone(settings.backbone))
    model = build_model(settings, label_names, encoder, plan)

    train_split = select_train_rows(splits["train"], settings) if settings.input_mode == "text" else splits["train"]
    eval_splits = {"train": train_split, "validation": splits["validation"]}
    budget = settings.max_tokens_per_batch if settings.input_mode == "text" else None
    if settings.input_mode == "text":
        from .batching import BucketPaddingCollator, bucket_lengths

        from .shared_prefix import plan_shared_prefix

        encoded = tokenize_splits(eval_splits, model.tokenizer, settings.max_length, model.format_texts)
        buckets = bucket_lengths(settings.max_length)
        prefix, model.shared_prefix_info = plan_shared_prefix(model, settings.shared_prefix, plan.gradient_checkpointing)
        collator = (BucketPaddingCollator(model.tokenizer, buckets, prefix) if budget
                    else TextCollator(model.tokenizer, prefix))
    else:
        encoded = embedding_columns(eval_splits)
        collator = EmbeddingCollator()

    from .checkpoints import fault_point

    EmoTrainer, NonFiniteLossCallback = make_trainer_class()
    distributed.exit_main_process_first()
    workers = dataloader_workers(settings)
    args = TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=per_device_batch,  # settings.batch_size is one step over all processes
        ddp_find_unused_parameters=distributed.find_unused_parameters(settings.lora_r),
        # CPU processes under a launcher: one gloo group, not N lone runs; and bf16 autocast on a machine without
        # CUDA, which transformers refuses unless told the CPU is meant.
        use_cpu=distributed.use_cpu() or (settings.bf16 and not torch.cuda.is_available()),
        per_device_eval_batch_size=settings.eval_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay,
        warmup_steps=settings.warmup_ratio,
        lr_scheduler_type="linear",
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="macro_f1",
        greater_is_better=True,
        logging_steps=25,
        logging_nan_inf_filter=False,
        train_sampling_strategy="group_by_length" if settings.input_mode == "text" else "random",
        bf16=settings.bf16,
        gradient_checkpointing=False,  # the loader sets it up on the backbone (Unsloth's own on GPU)
        remove_unused_columns=False,
        label_names=["labels"],
        report_to=[],
        seed=settings.seed,
        disable_tqdm=not show_progress,
        dataloader_num_workers=workers,
        # Kept across epochs and evaluations: starting workers again each pass would cost more than they save.
        dataloader_persistent_workers=workers > 0,
        dataloader_pin_memory=torch.cuda.is_available(),
        # Pinned batches copied to the GPU without blocking: a blocking copy waits for the GPU to finish the previous
        # step, so a host-bound step (a small decoder's) could never run ahead of the kernels it launched. The
        # profile on the H200 counted 4 such syncs per step inside the Trainer (docs/benchmarks.md).
        accelerator_config={"non_blocking": torch.cuda.is_available()},
    )
    from .eval_reuse import EvaluationMemory
    from .step_timing import StepTimer

    memory = EvaluationMemory(make_compute_metrics(label_names))  # the best epoch's validation pass, kept for reuse
    step_timer = StepTimer()  # where the run's time went: training_info.json "step_timing"
    callbacks = [NonFiniteLossCallback(), memory.callback(), step_timer.callback(), *(callbacks or [])]
    if settings.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=settings.early_stopping_patience))
    trainer = EmoTrainer(
        model=model,
        args=args,
        train_dataset=encoded["train"],
        eval_dataset=encoded["validation"],
        data_collator=collator,
        compute_metrics=memory.compute_metrics,
        callbacks=callbacks,
    )
    batching = None
    if budget:
        trainer.token_budget = (budget, buckets, settings.seed)
        trainer.fixed_batch_shapes = settings.fixed_batch_shapes
        trainer.eval_token_budget = plan.eval_tokens_per_batch or 2 * budget  # 2x where the config was unreadable
        from .batching import TokenBudgetBatchSampler

        batching = TokenBudgetBatchSampler([len(ids) for ids in encoded["train"]["input_ids"]], budget, buckets,
                                           seed=settings.seed, num_replicas=max(1, args.world_size),
                                           merge_sparse_buckets=settings.fixed_batch_shapes).summary()
        batching["mean_rows_per_optimizer_step"] = round(
            batching["mean_rows_per_batch"] * settings.gradient_accumulation_steps * batching["num_replicas"], 2)
        batching["eval_tokens_per_batch"] = trainer.eval_token_budget
        print(f"emo_hf: token-budget batches: {batching['batches_per_epoch']} per epoch, "
              f"{batching['mean_rows_per_optimizer_step']} rows per optimiser step on average "
              f"(budget {budget} padded tokens, buckets {buckets}, {100 * batching['pad_fraction']:.1f}% padding, "
              f"{batching['distinct_batch_shapes']} batch shapes"
              f"{', sparse buckets merged, rows padded' if settings.fixed_batch_shapes else ''}); "
              f"the learning rate {settings.learning_rate:g} applies per step, unscaled")
    started = time.time()
    fault_point("train.start")
    trainer.train(resume_from_checkpoint=newest_complete_checkpoint(str(checkpoints)) if resume else None)
    train_seconds = time.time() - started
    timing_line = step_timer.line()
    if timing_line and distributed.is_main_process():
        print(timing_line)

    # Thresholds: chosen on validation only, from the restored best checkpoint. Under DDP every rank takes part in
    # the prediction (Trainer gathers all validation rows, the last batch's padding dropped); rank 0 alone tunes and
    # saves, the others get its thresholds and return once OUT/model exists. The best epoch's own evaluation (same
    # weights, same rows, gathered on every rank alike) is reused when the Trainer made it: no second validation pass.
    remembered = memory.for_checkpoint(trainer.state.best_model_checkpoint)
    if remembered is not None:
        from .metrics import sigmoid

        val_probs, y_val = sigmoid(remembered[0]), np.asarray(remembered[1], dtype=np.float32)
    else:
        val_probs, y_val = predict_split_probs(trainer, encoded["validation"])
    if not distributed.is_main_process():
        thresholds = distributed.broadcast_object(None)
        distributed.barrier()
        return TrainResult(out_dir / "model", trainer.state.best_model_checkpoint, trainer.state.best_metric,
                           thresholds, train_seconds, {})
    thresholds = tune_thresholds(y_val, val_probs)
    model.set_thresholds([float(t) for t in thresholds])
    val_at_05 = multilabel_metrics(y_val, val_probs, 0.5, label_names)
    val_tuned = multilabel_metrics(y_val, val_probs, thresholds, label_names)

    model_dir = out_dir / "model"
    info = training_info(settings, data_dir, train_split, label_names)
    info.update({
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "best_validation_macro_f1_at_0.5": trainer.state.best_metric,
        "validation_metrics_at_0.5": headline(val_at_05),
        "validation_metrics_tuned": headline(val_tuned),
        "train_seconds": round(train_seconds, 1),
        "step_timing": step_timer.summary(),
        "memory_plan": plan.to_dict(),
        "batching": batching or {"batch_size": settings.batch_size, "sampler": "length-grouped" if settings.input_mode == "text" else "random"},
        "epochs_run": trainer.state.epoch,
        "log_history": trainer.state.log_history,
        "device": device_name() if distributed.world_size() == 1 else f"{distributed.world_size()} processes x {device_name()}",
        "peak_gpu_memory_gib": peak_gpu_gib(),
        "compile": getattr(model, "compile_info", None),
        "shared_prefix": getattr(model, "shared_prefix_info", None),
        "dataloader_workers": trainer.args.dataloader_num_workers,
        "date": time.strftime("%Y-%m-%d"),
    })
    info["hyperparameters"].update(load_in_4bit=plan.load_in_4bit, gradient_checkpointing=plan.gradient_checkpointing)
    save_trained_model(model, model_dir, info, data_dir)
    if settings.reload_check_rows > 0:
        record_reload_check(model, model_dir, splits["validation"], encoded["validation"], collator, settings)
    distributed.broadcast_object([float(t) for t in thresholds])
    distributed.barrier()
    return TrainResult(model_dir, trainer.state.best_model_checkpoint, trainer.state.best_metric, [float(t) for t in thresholds], train_seconds, headline(val_at_05))


def predict_split_probs(trainer, dataset) -> tuple[np.ndarray, np.ndarray]:
    """(sigmoid probabilities [n, L], multi-hot labels [n, L]) for an encoded split, through Trainer's prediction loop.

    The labels come back from the same loop: with `group_by_length`, Trainer also length-groups (reorders) the
    evaluation rows, so the split's own label column would not line up with the predictions.
    """
    from .metrics import sigmoid

    output = trainer.predict(dataset, metric_key_prefix="predict")
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    labels = output.label_ids[0] if isinstance(output.label_ids, tuple) else output.label_ids
    return sigmoid(logits), np.asarray(labels, dtype=np.float32)
