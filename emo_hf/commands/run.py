"""`emo-hf run [--source SOURCE] --out DIR [--preset NAME ...]`: the main job, data -> train -> evaluate -> save.

    EMO_HF_GOEMOTIONS=../shared/goemotions emo-hf run --out runs/default

Writes DIR/data (the `emo-hf data build` folder; reused when already built), DIR/model (loadable with AutoModel, with
its validation-tuned thresholds, test report and model card) and DIR/report.json + DIR/report.md (official test split).
Default preset: mistral-small-24b on a GPU with Unsloth, else minilm (the CPU default; see README for its budget).
"""

from __future__ import annotations

import argparse
import os

from .data import GOEMOTIONS_ENV
from .train import add_settings_arguments, settings_from_args


def register(subparsers) -> None:
    parser = subparsers.add_parser("run", help="the main job: build data, train, evaluate on test, save",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=None,
                        help=f"GoEmotions folder, CSV/JSONL/parquet file or Hub id (default: ${GOEMOTIONS_ENV}, "
                        "else the Hub dataset google-research-datasets/go_emotions)")
    parser.add_argument("--out", required=True, help="output folder (data/, model/, checkpoints/, report.*)")
    parser.add_argument("--data", default=None, help="use this existing dataset folder instead of OUT/data")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted training run")
    parser.add_argument("--no-baselines", action="store_true", help="skip the two baselines in the report")
    add_settings_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..backbones.training import import_unsloth_first

    settings = settings_from_args(args)
    import_unsloth_first(unsloth=settings.unsloth, load_in_4bit=settings.load_in_4bit, lora=bool(settings.lora_r))
    from ..data.loading import GOEMOTIONS_HUB_ID
    from ..pipeline import run_pipeline

    source = args.source or os.environ.get(GOEMOTIONS_ENV) or GOEMOTIONS_HUB_ID
    report = run_pipeline(source, args.out, settings, data_dir=args.data, resume=args.resume,
                          baselines=not args.no_baselines)
    if report is None:  # a DDP rank other than 0: rank 0 evaluates and reports
        return 0
    tuned = report["metrics_tuned"]
    print(f"Test macro-F1 {tuned['macro_f1']:.4f} (thresholds tuned on validation), "
          f"{report['metrics_at_0.5']['macro_f1']:.4f} at 0.5. Model: {args.out}/model  Report: {args.out}/report.md")
    return 0
