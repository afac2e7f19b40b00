"""The `emo-hf` command line.

    emo-hf data build --source ../shared/goemotions --out runs/data
    emo-hf train --data runs/data --preset minilm --out runs/model
    emo-hf evaluate runs/model --data runs/data --split test
    emo-hf run --out runs/default
    emo-hf export runs/default/model runs/export
    emo-hf push runs/default/model --repo-id ORG/NAME
    emo-hf predict runs/default/model --input texts.csv --output texts.pred.csv

Each subcommand lives in `emo_hf/commands/<name>.py` with `register(subparsers)` and `run(args)`; those modules
import nothing heavy at the top, so `emo-hf --help` stays fast and one command's dependencies don't slow another.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# subcommand name -> module under emo_hf.commands
COMMANDS: dict[str, str] = {
    "data": "data",
    "train": "train",
    "evaluate": "evaluate",
    "run": "run",
    "ablate": "ablate",
    "export": "export",
    "push": "push",
    "predict": "predict",
}


def build_parser() -> argparse.ArgumentParser:
    from .errors import OneLineArgumentParser  # argparse errors in one line (the subparsers inherit the class)

    parser = OneLineArgumentParser(prog="emo-hf", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of a failure (also: EMO_HF_DEBUG=1)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(f"emo_hf.commands.{module_name}")
        except ModuleNotFoundError as error:
            if error.name != f"emo_hf.commands.{module_name}":
                raise
            continue  # command not built yet
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; every failure ends as one line on stderr (emo_hf.errors): exit 2 for bad input, 1 for an
    internal error, the traceback only with --debug or EMO_HF_DEBUG=1."""
    from .errors import report_failure

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse: --help (0) or a bad argument (2, its one line already printed)
        return exit_.code if isinstance(exit_.code, int) else 0
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return int(args.func(args) or 0)
    except (Exception, KeyboardInterrupt) as error:
        return report_failure(error, command=args.command, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
