"""`emo-hf evaluate MODEL_DIR --data DATA_DIR [--split test] [--out DIR] [--no-baselines]`.

Writes report.json, report.md, per_label_f1.png and label_counts.png. The test split's report goes into the model
folder (or --out, with a copy in the model folder), whose model card is regenerated from it; any other split's report
goes to MODEL/<split>_report/ (or --out) and leaves the model folder's test report and card alone.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser("evaluate", help="score a trained model on a split, next to two baselines",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="trained model folder (OUT/model of emo-hf train)")
    parser.add_argument("--data", required=True, help="dataset folder written by `emo-hf data build`")
    parser.add_argument("--split", default="test", help="split to score (default: test)")
    parser.add_argument("--out", default=None, help="report folder (default: the model folder)")
    parser.add_argument("--no-baselines", action="store_true", help="skip the TF-IDF and embedding baselines")
    parser.add_argument("--batch-size", type=int, default=64, help="prediction batch size")
    parser.add_argument("--probabilities", default=None,
                        help="score this saved SPLIT_probabilities.npy instead of running the model (e.g. one written "
                        "by `emo-hf evaluate` on a GPU machine); MODEL then needs only its config and thresholds")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..distributed import is_main_process
    from ..pipeline import evaluate_model, report_dir

    if not is_main_process():  # under a launcher, rank 0 scores the split in one process (README: several GPUs)
        return 0

    report = evaluate_model(args.model, args.data, args.split, args.out, baselines=not args.no_baselines,
                            batch_size=args.batch_size, probabilities=args.probabilities)
    tuned, at_05 = report["metrics_tuned"], report["metrics_at_0.5"]
    print(f"{args.split}: macro-F1 {tuned['macro_f1']:.4f} (validation-tuned thresholds), {at_05['macro_f1']:.4f} at 0.5; "
          f"micro-F1 {tuned['micro_f1']:.4f}; subset accuracy {tuned['subset_accuracy']:.4f}")
    for name, values in (report.get("baselines") or {}).items():
        print(f"  baseline {name}: macro-F1 {values['metrics_tuned']['macro_f1']:.4f} (tuned), "
              f"{values['metrics_at_0.5']['macro_f1']:.4f} at 0.5")
    print(f"Report: {report_dir(Path(args.model), args.split, args.out) / 'report.md'}")
    return 0
