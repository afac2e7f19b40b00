"""`emo-hf push MODEL_DIR --repo-id ORG/NAME [--private] [--revision R] [--commit-message M]`."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "push",
        help="upload a trained model (exported, with its card) to the Hugging Face Hub in one commit",
        description="Export MODEL_DIR to a temporary folder (as `emo-hf export` does) and upload it to the Hub repo "
        "ORG/NAME in one commit, creating the repo (and the branch) if needed. The token comes from HF_TOKEN or "
        "`hf auth login`; HF_ENDPOINT selects another Hub endpoint.",
    )
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="folder saved by training, e.g. runs/default/model")
    parser.add_argument("--repo-id", required=True, metavar="ORG/NAME", help="Hub repo, e.g. my-org/emo-minilm")
    parser.add_argument("--private", action="store_true", help="create the repo private (ignored if it exists)")
    parser.add_argument("--revision", default=None, metavar="BRANCH",
                        help="branch to commit to (created from main if missing; default: main)")
    parser.add_argument("--commit-message", default=None, metavar="TEXT", help="commit message")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..export import push_model

    url = push_model(args.model_dir, args.repo_id, private=args.private, revision=args.revision,
                     commit_message=args.commit_message)
    print(f"Pushed {args.model_dir} to {args.repo_id}: {url}")
    return 0
