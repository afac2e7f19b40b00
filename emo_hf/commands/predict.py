"""`emo-hf predict MODEL --input FILE --output FILE`: every row of a file (or dataset split) with its emotions.

    emo-hf predict runs/default/model --input tickets.csv --output tickets.pred.csv --text-column body
    emo-hf predict runs/onnx --onnx --input posts.jsonl --output posts.pred.parquet --resume
    torchrun --nproc_per_node 2 -m emo_hf predict runs/default/model --input big.parquet --output big.pred.parquet
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="predict the emotions of every row of a CSV / TSV / JSONL / parquet file or dataset split",
        description="Read INPUT in chunks and write OUTPUT (format from its suffix: .csv, .tsv, .jsonl, .parquet): "
        "the same rows in the same order with one probability column per label, a `labels` column (the labels at "
        "or over their tuned thresholds) and an `error` column (missing, empty or non-string texts are kept and "
        "flagged). Interrupted? Run the same command with --resume. Under torchrun / accelerate launch the chunks "
        "are shared out between the processes and one output is written.",
    )
    parser.add_argument("model", metavar="MODEL", help="trained model folder (e.g. runs/default/model) or, with "
                        "--onnx, a folder written by `emo-hf export MODEL OUT --onnx`")
    parser.add_argument("--input", required=True, metavar="FILE",
                        help="CSV, TSV, JSONL or parquet file, a datasets folder, or a Hub dataset id (with --split)")
    parser.add_argument("--output", required=True, metavar="FILE", help="file to write (.csv .tsv .jsonl .parquet)")
    parser.add_argument("--text-column", default="text", help="column holding the texts (default: text)")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default: 32)")
    parser.add_argument("--threshold-shift", type=float, default=0.0, metavar="X",
                        help="add X to every tuned threshold (e.g. -0.1 for more labels per text)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run after its last finished chunk")
    parser.add_argument("--onnx", action="store_true", help="run MODEL, an ONNX export, with onnxruntime")
    parser.add_argument("--split", default=None, help="split of a datasets folder or Hub dataset (e.g. test)")
    parser.add_argument("--config-name", default=None, help="config of a datasets folder or Hub dataset (e.g. raw)")
    parser.add_argument("--chunk-rows", type=int, default=None,
                        help="rows per chunk: the length-sorting window and the unit of --resume (default: 4096)")
    parser.add_argument("--column-prefix", default="",
                        help="prefix of the added columns, when the input already has e.g. a `labels` column")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..predict_files import DEFAULT_CHUNK_ROWS, predict_file, summary_line

    summary = predict_file(args.model, args.input, args.output, text_column=args.text_column,
                           batch_size=args.batch_size, threshold_shift=args.threshold_shift, resume=args.resume,
                           onnx=args.onnx, chunk_rows=args.chunk_rows or DEFAULT_CHUNK_ROWS, split=args.split,
                           config_name=args.config_name, column_prefix=args.column_prefix,
                           overwrite=args.overwrite, show_progress=not args.no_progress)
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        print(summary_line(summary))
    return 0
