"""`emo-hf ablate --source GOEMOTIONS_DIR --out DIR [--preset minilm] [--epochs 2] [--only NAME,NAME ...]`.

One backbone, eight variants (text-none, text-undersample, text-random, text-bce, embedding-none, embedding-random,
embedding-smote, embedding-ismote), each trained and scored on test; the table of validation and test macro-F1 goes
to DIR/ablation.md, DIR/ablation.json and the chart DIR/ablation.png. Finished variants are skipped, so a killed run
continues where it stopped (with the same options). See emo_hf/ablation.py for what each variant changes.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from .data import GOEMOTIONS_ENV


def register(subparsers) -> None:
    from ..presets import PRESETS

    parser = subparsers.add_parser("ablate", help="balancing / loss / input-mode ablation of one backbone",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=None,
                        help=f"GoEmotions folder (or CSV/JSONL/parquet file, Hub id); default: ${GOEMOTIONS_ENV}")
    parser.add_argument("--out", required=True, help="output folder (data-*/, one folder per variant, ablation.*)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="minilm", help="backbone and optimiser defaults "
                        "(default: %(default)s)")
    parser.add_argument("--epochs", type=float, default=None, help="epochs for every variant (default: the preset's)")
    parser.add_argument("--learning-rate", type=float, default=None, help="default: the preset's")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    parser.add_argument("--train-subset", type=int, default=None,
                        help="the same seeded N train rows for every variant (quick runs)")
    parser.add_argument("--target-per-label", type=int, default=1500,
                        help="oversampling target (positives per label) of the random/SMOTE/ISMOTE variants "
                        "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=None, help="default: the preset's (42)")
    parser.add_argument("--only", default=None, help="comma-separated variants to run (default: all eight)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs stay short)")
    parser.set_defaults(func=run)


def _command(args: argparse.Namespace) -> str:
    """The command as typed when run from the shell, else the equivalent one rebuilt from the parsed options."""
    if Path(sys.argv[0]).name in ("emo-hf", "__main__.py") and "ablate" in sys.argv[1:]:
        return "emo-hf " + shlex.join(sys.argv[1:])
    parts = ["emo-hf", "ablate"]
    for name in ("source", "out", "preset", "epochs", "learning_rate", "batch_size", "train_subset",
                 "target_per_label", "seed", "only"):
        value = getattr(args, name)
        if value is not None:
            parts += ["--" + name.replace("_", "-"), f"{value:g}" if isinstance(value, float) else str(value)]
    if args.no_progress:
        parts.append("--no-progress")
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    from ..backbones.training import import_unsloth_first
    from ..presets import get_preset

    preset = get_preset(args.preset)  # every variant trains through the preset's stack
    import_unsloth_first(unsloth=preset.unsloth, load_in_4bit=preset.load_in_4bit, lora=bool(preset.lora_r))
    from ..ablation import run_ablation

    source = args.source or os.environ.get(GOEMOTIONS_ENV)
    if not source:
        raise ValueError(f"No data: pass --source (the GoEmotions folder) or set {GOEMOTIONS_ENV}.")
    summary = run_ablation(
        source, args.out, args.preset, epochs=args.epochs, learning_rate=args.learning_rate,
        batch_size=args.batch_size, train_subset=args.train_subset, target_per_label=args.target_per_label,
        seed=args.seed, only=args.only, show_progress=not args.no_progress, command=_command(args),
    )
    print(f"{len(summary['variants'])} variant(s) in {args.out}/ablation.md (and ablation.json, ablation.png)")
    return 0
