"""`emo-hf export MODEL_DIR OUT [--repo-id ORG/NAME]`: a self-contained copy of a trained model, with its card."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="copy a trained model into a self-contained folder with a generated model card",
        description="Copy a trained emo_hf model (config, thresholds, head, LoRA adapter, tokenizer, code, report) "
        "into OUT and generate its README.md model card. OUT must not exist, be empty, or hold an earlier export.",
    )
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="folder saved by training, e.g. runs/default/model")
    parser.add_argument("out", metavar="OUT", help="folder to write, e.g. runs/export")
    parser.add_argument("--repo-id", default=None, metavar="ORG/NAME",
                        help="Hub repo the folder is meant for: used in the card's loading examples")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..export import export_model
    from ..hub import validate_repo_id

    if args.repo_id is not None:
        validate_repo_id(args.repo_id)
    out = export_model(args.model_dir, args.out, repo_id=args.repo_id)
    print(f"Exported {args.model_dir} to {out} (model card: {out / 'README.md'})")
    return 0
