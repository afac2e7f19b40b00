"""The README's first two commands are what CI runs (.ci/run), word for word, and what they name exists."""

from __future__ import annotations

import re

from goemotions_path import REPO


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), flags=re.S)
    return [block.strip() for block in blocks]


def ci_commands() -> list[str]:
    lines = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    return [lines[i + 1].strip() for i, line in enumerate(lines) if line.startswith("# README command")]


def test_ci_runs_exactly_the_first_two_readme_commands():
    assert len(readme_commands()) >= 2
    assert ci_commands() == readme_commands()[:2]


def test_the_install_command_pins_the_cpu_torch_and_runs_the_main_job():
    install = readme_commands()[0]
    assert "pip install torch==2.13.0" in install  # an unpinned torch pulls a CUDA build of several GB
    assert "emo-hf run" in install and "--out runs/default" in install
    assert readme_commands()[1] == "python -m pytest -q"


def test_every_command_the_readme_lists_exists():
    from emo_hf.cli import build_parser

    text = (REPO / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"`emo-hf (\w+)", text))
    parser = build_parser()
    available = set(parser._subparsers._group_actions[0].choices)  # argparse keeps subcommands here
    assert listed and listed <= available, listed - available
    for path in re.findall(r"\]\(([\w/.-]+\.md)\)", text):
        assert (REPO / path).is_file(), path
