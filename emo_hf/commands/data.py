"""`emo-hf data build`: GoEmotions (or your file) -> balanced dataset folder loadable with `load_dataset`.

    emo-hf data build --out runs/data                                  # source from $EMO_HF_GOEMOTIONS or the Hub
    emo-hf data build --source ../shared/goemotions --out runs/data --balance smote --target-per-label 2000
    emo-hf data build --source mine.csv --out runs/mine --labels joy,anger --push-to-hub ORG/NAME
    emo-hf data build --source ../shared/goemotions --out runs/text --raw-only   # text-mode training only: no embedding
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

GOEMOTIONS_ENV = "EMO_HF_GOEMOTIONS"
HUB_ID = "google-research-datasets/go_emotions"
# Kept in sync with emo_hf.data.builder (not imported here: this module must stay light for `emo-hf --help`).
DEFAULT_TARGET_PER_LABEL = 1500
DEFAULT_KEEP_NO_EMOTION = 0.5
DEFAULT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="build the dataset", description=__doc__.split("\n\n")[0])
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    build = actions.add_parser(
        "build",
        help="load, embed, balance (train only) and write the dataset folder",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    build.add_argument(
        "--source",
        default=None,
        help=f"GoEmotions folder with the official TSV files, a CSV/JSONL/parquet file, or a Hub id "
        f"(default: ${GOEMOTIONS_ENV} if set, else {HUB_ID})",
    )
    build.add_argument("--out", required=True, help="output folder (replaced atomically when the build succeeds)")
    build.add_argument("--labels", default=None, help="comma-separated label names, 'goemotions' for all 28 (default: the 15 defaults)")
    build.add_argument("--balance", default=None, choices=["ismote", "smote", "random", "none"], help="oversampling method (default: ismote)")
    build.add_argument("--raw-only", action="store_true", help="write the raw config alone: no sentence embeddings, no "
                       "balancing (most of a build's time on a CPU); enough for text-mode training, i.e. every decoder "
                       "preset and minilm. Embedding-mode training and the ablation need the balanced config")
    build.add_argument(
        "--target-per-label",
        type=int,
        default=DEFAULT_TARGET_PER_LABEL,
        help="oversample each label to at least this many train positives (default: %(default)s, about the median of the "
        "15 default GoEmotions labels (joy 1,452): the 8 rarer ones (fear 596, disgust 793, excitement 853, ...) are "
        "lifted, fear the most (2.5x, so 60%% of its positives are synthetic); the frequent ones only gain rows through "
        "seeds they share with rare ones. Higher targets make the rare labels mostly synthetic)",
    )
    build.add_argument(
        "--keep-no-emotion",
        type=float,
        default=DEFAULT_KEEP_NO_EMOTION,
        help="fraction of no-emotion train rows to keep (default: %(default)s; with the 15 defaults 21,363 of 43,410 "
        "GoEmotions train rows carry none of them: keeping half makes them 30%% of the balanced train split instead of 49%%, "
        "while leaving thousands of negatives so the model still learns to predict nothing)",
    )
    build.add_argument("--encoder", default=DEFAULT_ENCODER, help="sentence encoder (Hub id or local folder) for the embedding space (default: %(default)s)")
    build.add_argument("--seed", type=int, default=42, help="random seed (default: %(default)s)")
    build.add_argument("--k-neighbors", type=int, default=5, help="neighbours per seed for smote/ismote (default: %(default)s)")
    build.add_argument("--expansion", type=float, default=0.5, help="ISMOTE expansion α: points reach α·distance beyond seed and neighbour (default: %(default)s)")
    build.add_argument("--text-column", default=None, help="your file: the text column (default: text)")
    build.add_argument(
        "--label-column",
        default=None,
        help="your file: a column of label-name lists, or comma-separated 0/1 columns, one per label "
        "(default: the --labels columns when they exist, else a 'labels' column)",
    )
    build.add_argument("--split-column", default=None, help="your file: column holding train/validation/test (default: make seeded stratified splits)")
    build.add_argument(
        "--drop-unknown-labels",
        action="store_true",
        help="your file: ignore label names in the label column that are not in --labels (default: refuse them, so a "
        "typo such as 'angr' is not silently read as 'no emotion')",
    )
    build.add_argument("--push-to-hub", default=None, metavar="REPO_ID", help="upload the finished folder as a Hub dataset repo")
    build.add_argument("--public", action="store_true", help="with --push-to-hub: make the repo public (default: private)")
    build.add_argument("--no-progress", action="store_true", help="hide progress bars")
    build.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from emo_hf.data.builder import build_dataset, format_summary

    source = args.source or os.environ.get(GOEMOTIONS_ENV) or HUB_ID
    command = "emo-hf " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["data"] else None
    user_data = {}
    if args.text_column:
        user_data["text_column"] = args.text_column
    if args.label_column:
        columns = [c.strip() for c in args.label_column.split(",") if c.strip()]
        user_data["label_column"] = columns[0] if len(columns) == 1 and "," not in args.label_column else columns
    if args.split_column:
        user_data["split_column"] = args.split_column
    if args.drop_unknown_labels:
        user_data["drop_unknown_labels"] = True
    if args.raw_only and args.balance is not None:
        raise ValueError(f"--balance {args.balance} balances the 'balanced' config, which --raw-only does not write: "
                         f"drop one, e.g. emo-hf data build --out {args.out} --raw-only")
    info = build_dataset(
        source,
        args.out,
        labels=args.labels,
        balance=args.balance or "ismote",
        raw_only=args.raw_only,
        target_per_label=args.target_per_label,
        keep_no_emotion=args.keep_no_emotion,
        encoder=args.encoder,
        seed=args.seed,
        push_to_hub=args.push_to_hub,
        private=not args.public,
        k_neighbors=args.k_neighbors,
        expansion=args.expansion,
        show_progress=not args.no_progress,
        command=command,
        user_data=user_data or None,
    )
    print(format_summary(info))
    return 0
