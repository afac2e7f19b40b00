"""`emo-hf train --data DATA_DIR --out OUT_DIR [--preset NAME] [--epochs 2 --learning-rate 1e-4 ...]`."""

from __future__ import annotations

import argparse
import dataclasses
import typing

from ..presets import PRESETS, TrainSettings


def default_preset() -> str:
    """The 24B preset on a GPU with Unsloth installed, else the CPU default."""
    import importlib.util

    try:
        import torch

        if torch.cuda.is_available() and importlib.util.find_spec("unsloth") is not None:
            return "mistral-small-24b"
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return "minilm"


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """One `--flag` per TrainSettings field, with the field's help text; unset flags keep the preset's value."""
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="Defaults for backbone, mode, LoRA and optimiser (default: mistral-small-24b on a GPU "
                        "with Unsloth, else minilm).")
    hints = typing.get_type_hints(TrainSettings)
    group = parser.add_argument_group("settings (override the preset)")

    def help_of(field: dataclasses.Field) -> str:  # argparse formats help with %: a literal "1%" must be "1%%"
        return field.metadata["help"].replace("%", "%%")

    for field in dataclasses.fields(TrainSettings):
        if field.name == "preset":
            continue
        flag = "--" + field.name.replace("_", "-")
        kind = hints[field.name]
        if kind is bool or set(typing.get_args(kind)) == {bool, type(None)}:  # bool | None: unset = automatic
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_of(field))
            continue
        base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
        extra = " (0 = full fine-tuning)" if field.name == "lora_r" else ""
        group.add_argument(flag, type=base, default=None, help=help_of(field) + extra)


def settings_from_args(args: argparse.Namespace) -> TrainSettings:
    from ..presets import get_preset

    settings = get_preset(args.preset or default_preset())
    overrides = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(TrainSettings) if f.name != "preset"}
    full_finetune = overrides.get("lora_r") == 0
    settings = settings.replace(**overrides)
    if full_finetune:
        settings = dataclasses.replace(settings, lora_r=None)
    return settings


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train a classifier on a dataset folder", description=__doc__)
    parser.add_argument("--data", required=True, help="dataset folder written by `emo-hf data build`")
    parser.add_argument("--out", required=True, help="output folder (checkpoints/ and model/)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    add_settings_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..backbones.training import import_unsloth_first
    from ..distributed import is_main_process

    settings = settings_from_args(args)
    import_unsloth_first(unsloth=settings.unsloth, load_in_4bit=settings.load_in_4bit, lora=bool(settings.lora_r))
    from ..trainer import train

    result = train(args.data, args.out, settings, resume=args.resume)
    if not is_main_process():  # under torchrun / accelerate launch, rank 0 alone reports
        return 0
    print(f"Best validation macro-F1 at 0.5: {result.best_metric:.4f} ({result.best_checkpoint})")
    print(f"Model with validation-tuned thresholds: {result.model_dir}")
    return 0
