"""EmoTrainer: transformers' Trainer with emo_hf model folders as checkpoints, token-budget batches and a guard
against a non-finite loss.

    EmoTrainer, NonFiniteLossCallback = make_trainer_class()
    trainer = EmoTrainer(model=model, args=args, ..., callbacks=[NonFiniteLossCallback()])

`emo_hf.trainer.train` sets it up; this module holds only the subclass and its callback: where a checkpoint is saved
and loaded (emo_hf.checkpoints makes it atomic), which sampler and batches a split gets (emo_hf.distributed,
emo_hf.batching), and how the loss is scaled.
"""

from __future__ import annotations

import logging
import math
import os

from . import distributed

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


def make_trainer_class():
    """(EmoTrainer, NonFiniteLossCallback): classes made on first use, so that importing emo_hf does not import
    transformers."""
    from transformers import Trainer, TrainerCallback

    from .checkpoints import fault_point, newest_complete_checkpoint, save_checkpoint_atomically

    class NonFiniteLossCallback(TrainerCallback):
        """Stops at the first logged NaN/inf loss; checked at logging steps so no extra host sync per step."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(loss):
                last = newest_complete_checkpoint(args.output_dir)
                raise NonFiniteLossError(
                    f"The training loss became {loss} at step {state.global_step}. "
                    + (f"The last good checkpoint is {last} (usable with --resume or AutoModel.from_pretrained). " if last else "No checkpoint was saved before it. ")
                    + "Lower --learning-rate, or use --focal-gamma 0 (plain BCE), and train again."
                )

    class EmoTrainer(Trainer):
        """Trainer whose checkpoints are emo_hf model folders (adapter + head + config), loaded back the same way.

        Trainer's own save/load handle a bare PreTrainedModel or a PeftModel; ours is a PreTrainedModel that holds a
        peft-wrapped backbone, so saving and (best-)checkpoint loading go through the model's own methods.
        """

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            # The model's loss is the mean over its own batch and ignores `num_items_in_batch` (its forward takes
            # **kwargs, which makes Trainer assume otherwise): so Trainer must divide by the accumulation steps and
            # must not multiply by the number of DDP processes (it would double a 2-process loss and gradients).
            self.model_accepts_loss_kwargs = False
            self._sorted_loaders: dict = {}  # id(dataset) -> (dataset, loader): the dataset held so its id stays unique

        def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
            output_dir = output_dir or self.args.output_dir
            os.makedirs(output_dir, exist_ok=True)
            self.model.save_pretrained(output_dir)
            fault_point("checkpoint.model_saved")

        # A checkpoint is complete or absent: written into a staging folder, then renamed (emo_hf.checkpoints).
        _emo_staging: str | None = None

        def _get_output_dir(self, trial) -> str:
            return self._emo_staging or super()._get_output_dir(trial)

        def _save_checkpoint(self, model, trial) -> None:
            save_checkpoint_atomically(self, super()._save_checkpoint, model, trial)

        def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
            (model or self.model).load_trained_weights(resume_from_checkpoint)

        def _get_train_sampler(self, train_dataset=None):
            # Length-grouped order: seeded per epoch and grouped in global batches, so DDP ranks shard one order
            # that equals the single-process one (emo_hf.distributed).
            if self.args.train_sampling_strategy != "group_by_length":
                return super()._get_train_sampler(train_dataset)
            return distributed.make_length_grouped_sampler(
                self.train_dataset if train_dataset is None else train_dataset,
                global_batch_size=self.args.train_batch_size * self.args.world_size * self.args.gradient_accumulation_steps,
                seed=self.args.seed)

        def _load_optimizer_and_scheduler(self, checkpoint):
            with distributed.cpu_map_location():  # CPU processes: accelerate's device "cpu:0" breaks torch.load
                return super()._load_optimizer_and_scheduler(checkpoint)

        def _load_best_model(self) -> None:
            logger.info("Restoring the best checkpoint %s (validation macro-F1 %.4f)", self.state.best_model_checkpoint, self.state.best_metric)
            self.model.load_trained_weights(self.state.best_model_checkpoint)

        # Token-budget batches (emo_hf.batching): train() sets `token_budget` = (max_tokens, buckets, seed).
        token_budget: tuple | None = None
        fixed_batch_shapes = False  # training batches padded to one shape per bucket (--fixed-batch-shapes)
        eval_token_budget: int | None = None  # tokens per evaluation batch, set by train() with token_budget
        _parameter_count: int | None = None

        def get_train_dataloader(self):
            if self.token_budget is None:
                return super().get_train_dataloader()
            from .batching import token_budget_dataloader

            max_tokens, buckets, seed = self.token_budget
            return token_budget_dataloader(self, self.train_dataset, max_tokens, buckets, shuffle=True, seed=seed,
                                           fixed_shapes=self.fixed_batch_shapes)

        def get_eval_dataloader(self, eval_dataset=None):
            if self.token_budget is None or isinstance(eval_dataset, str) or self.args.world_size > 1:
                return super().get_eval_dataloader(eval_dataset)
            return self._sorted_loader(self.eval_dataset if eval_dataset is None else eval_dataset)

        def get_test_dataloader(self, test_dataset):
            if self.token_budget is None or self.args.world_size > 1:
                return super().get_test_dataloader(test_dataset)
            return self._sorted_loader(test_dataset)

        def _sorted_loader(self, dataset):
            # Evaluation: no gradients or saved activations, so more tokens per batch (eval_token_budget: the memory
            # plan's eval_tokens_per_batch); rows sorted by length.
            # One loader per dataset: with persistent workers, a new loader would start new worker processes at
            # every evaluation and leave the old ones running.
            from .batching import token_budget_dataloader

            _, buckets, _ = self.token_budget
            key = id(dataset)
            if key not in self._sorted_loaders:
                self._sorted_loaders[key] = (dataset, token_budget_dataloader(
                    self, dataset, self.eval_token_budget, buckets, shuffle=False))
            return self._sorted_loaders[key][1]

        def floating_point_ops(self, inputs) -> int:
            # Trainer counts 6 x tokens x parameters every step, and counting the parameters walks every module of the
            # model each time (host work per step): count them once.
            if self._parameter_count is None:
                self._parameter_count = self.model.num_parameters(exclude_embeddings=True)
            ids = inputs.get("input_ids") if isinstance(inputs, dict) else None
            return 6 * ids.numel() * self._parameter_count if ids is not None else 0

    return EmoTrainer, NonFiniteLossCallback
