"""`emo-hf export MODEL_DIR OUT [--repo-id ORG/NAME]`: a self-contained copy of a trained model, with its card.
`emo-hf export MODEL_DIR OUT --onnx [--int8]`: an ONNX graph + tokenizer + thresholds for onnxruntime instead."""

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
    parser.add_argument("--onnx", action="store_true",
                        help="write an ONNX graph, the tokenizer and thresholds instead (for onnxruntime / "
                        "`emo-hf predict OUT --onnx`); text-mode models")
    parser.add_argument("--int8", action="store_true", help="with --onnx: dynamic int8 quantisation of the weights")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..export import export_model
    from ..hub import validate_repo_id

    if args.int8 and not args.onnx:
        raise ValueError("--int8 quantises the ONNX graph: pass it with --onnx, e.g. emo-hf export MODEL OUT --onnx "
                         "--int8")
    if args.onnx:
        from ..onnx_export import export_onnx

        out = export_onnx(args.model_dir, args.out, int8=args.int8)
        print(f"Exported {args.model_dir} to {out} as ONNX ({'int8' if args.int8 else 'float32'}); run it with "
              f"emo-hf predict {out} --onnx --input FILE --output FILE")
        return 0
    if args.repo_id is not None:
        validate_repo_id(args.repo_id)
    out = export_model(args.model_dir, args.out, repo_id=args.repo_id)
    print(f"Exported {args.model_dir} to {out} (model card: {out / 'README.md'})")
    return 0
