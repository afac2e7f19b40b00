"""Bad invocations of every command, table-driven, run in-process through emo_hf.cli.main: each exits 2 with ONE
line on stderr naming the culprit (path, file, argument), no traceback, and nothing left at the output path.
An internal error exits 1; --debug / EMO_HF_DEBUG=1 add the traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
from fake_model import make_model_folder

from emo_hf.cli import main


class Ctx:
    """The paths a case works with: a fabricated model folder, an output path that must stay as it was."""

    def __init__(self, root: Path):
        self.root = root
        self.model = make_model_folder(root / "model")
        self.out = root / "out"
        self.data = root / "no-data"  # never valid: every case fails before the data would be read
        self.userdir = root / "mine"
        self.userdir.mkdir()
        (self.userdir / "notes.txt").write_text("the user's own file\n")
        self.file = root / "plain.txt"
        self.file.write_text("not a folder\n")


def truncate(path: Path, keep: int = 40) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def damage(name: str, how: str) -> Callable[[Ctx], None]:
    def apply(ctx: Ctx) -> None:
        path = ctx.model / name
        if how == "delete":
            path.unlink()
        elif how == "truncate":
            truncate(path)
        elif how == "garbage":
            path.write_text("{not json at all")
    return apply


def no_token(ctx: Ctx, monkeypatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(ctx.root / "hf-home"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(ctx.root / "hf-home" / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(ctx.root / "hf-home" / "stored_tokens"))


def bad_build_info(ctx: Ctx) -> None:
    ctx.data.mkdir()
    (ctx.data / "build_info.json").write_text("{garbage")


# (id, argv from the context, setup or None, culprit the one line must name)
CASES: list[tuple[str, Callable[[Ctx], list[str]], Callable | None, Callable[[Ctx], str]]] = [
    ("no-command", lambda c: [], None, lambda c: "COMMAND"),
    ("unknown-command", lambda c: ["bogus"], None, lambda c: "bogus"),
    ("train-missing-out", lambda c: ["train", "--data", str(c.data)], None, lambda c: "--out"),
    ("train-bad-float", lambda c: ["train", "--data", str(c.data), "--out", str(c.out), "--epochs", "abc"], None,
     lambda c: "--epochs"),
    ("train-unknown-preset", lambda c: ["train", "--data", str(c.data), "--out", str(c.out), "--preset", "gpt9"],
     None, lambda c: "--preset"),
    ("train-typo-flag", lambda c: ["train", "--data", str(c.data), "--out", str(c.out), "--lerning-rate", "1"], None,
     lambda c: "--lerning-rate"),
    ("train-bad-setting", lambda c: ["train", "--data", str(c.data), "--out", str(c.out), "--keep-no-emotion", "2"],
     None, lambda c: "keep_no_emotion"),
    ("train-missing-data", lambda c: ["train", "--data", str(c.data), "--out", str(c.out), "--preset", "tiny-random"],
     None, lambda c: str(c.data)),
    ("train-data-is-a-file", lambda c: ["train", "--data", str(c.file), "--out", str(c.out), "--preset",
                                        "tiny-random"], None, lambda c: str(c.file)),
    ("train-garbage-build-info", lambda c: ["train", "--data", str(c.data), "--out", str(c.out), "--preset",
                                            "tiny-random"], bad_build_info, lambda c: "build_info.json"),
    ("train-out-is-a-file", lambda c: ["train", "--data", str(c.data), "--out", str(c.file)], None,
     lambda c: str(c.file)),
    ("train-out-is-the-users", lambda c: ["train", "--data", str(c.data), "--out", str(c.userdir)], None,
     lambda c: str(c.userdir)),
    ("train-resume-nothing", lambda c: ["train", "--data", str(c.data), "--out", str(c.out), "--resume", "--preset",
                                        "tiny-random"], None, lambda c: "--resume"),
    ("run-out-is-the-users", lambda c: ["run", "--out", str(c.userdir), "--preset", "tiny-random"], None,
     lambda c: str(c.userdir)),
    ("run-missing-data", lambda c: ["run", "--out", str(c.out), "--data", str(c.data), "--preset", "tiny-random"],
     None, lambda c: str(c.data)),
    ("evaluate-missing-model", lambda c: ["evaluate", str(c.root / "nope"), "--data", str(c.data)], None,
     lambda c: str(c.root / "nope")),
    ("evaluate-no-config", lambda c: ["evaluate", str(c.model), "--data", str(c.data), "--out", str(c.out)],
     damage("config.json", "delete"), lambda c: "config.json"),
    ("evaluate-garbage-config", lambda c: ["evaluate", str(c.model), "--data", str(c.data), "--out", str(c.out)],
     damage("config.json", "garbage"), lambda c: "config.json"),
    ("evaluate-truncated-head", lambda c: ["evaluate", str(c.model), "--data", str(c.data), "--out", str(c.out)],
     damage("head.safetensors", "truncate"), lambda c: "head.safetensors"),
    ("evaluate-garbage-thresholds", lambda c: ["evaluate", str(c.model), "--data", str(c.data), "--out",
                                               str(c.out)], damage("thresholds.json", "garbage"),
     lambda c: "thresholds.json"),
    ("evaluate-truncated-adapter", lambda c: ["evaluate", str(c.model), "--data", str(c.data), "--out", str(c.out)],
     damage("adapter/adapter_model.safetensors", "truncate"), lambda c: "adapter_model.safetensors"),
    ("evaluate-missing-adapter", lambda c: ["evaluate", str(c.model), "--data", str(c.data), "--out", str(c.out)],
     damage("adapter/adapter_config.json", "delete"), lambda c: "adapter/adapter_config.json"),
    ("evaluate-missing-data", lambda c: ["evaluate", str(c.model), "--data", str(c.data), "--out", str(c.out),
                                         "--probabilities", str(c.root / "p.npy")], None, lambda c: str(c.data)),
    ("evaluate-validation-over-test-report", lambda c: ["evaluate", str(c.model), "--data", str(c.data), "--split",
                                                        "validation", "--out", str(c.model)], None,
     lambda c: "test report"),
    ("export-missing-model", lambda c: ["export", str(c.root / "nope"), str(c.out)], None,
     lambda c: str(c.root / "nope")),
    ("export-no-config", lambda c: ["export", str(c.model), str(c.out)], damage("config.json", "delete"),
     lambda c: "config.json"),
    ("export-truncated-head", lambda c: ["export", str(c.model), str(c.out)], damage("head.safetensors", "truncate"),
     lambda c: "head.safetensors"),
    ("export-garbage-thresholds", lambda c: ["export", str(c.model), str(c.out)],
     damage("thresholds.json", "garbage"), lambda c: "thresholds.json"),
    ("export-no-tokenizer", lambda c: ["export", str(c.model), str(c.out)],
     damage("tokenizer_config.json", "delete"), lambda c: "tokenizer"),
    ("export-into-the-users-folder", lambda c: ["export", str(c.model), str(c.userdir)], None,
     lambda c: str(c.userdir)),
    ("export-inside-the-model", lambda c: ["export", str(c.model), str(c.model / "x")], None,
     lambda c: str(c.model / "x")),
    ("export-bad-repo-id", lambda c: ["export", str(c.model), str(c.out), "--repo-id", "no-slash"], None,
     lambda c: "no-slash"),
    ("export-missing-argument", lambda c: ["export", str(c.model)], None, lambda c: "OUT"),
    ("push-bad-repo-id", lambda c: ["push", str(c.model), "--repo-id", "a/b/c"], None, lambda c: "a/b/c"),
    ("push-no-token", lambda c: ["push", str(c.model), "--repo-id", "me/emo"], no_token, lambda c: "HF_TOKEN"),
    ("ablate-no-source", lambda c: ["ablate", "--out", str(c.out)], "no-source", lambda c: "--source"),
    ("data-bad-balance", lambda c: ["data", "build", "--out", str(c.out), "--balance", "smite"], None,
     lambda c: "--balance"),
]


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_bad_invocation_exits_2_with_one_line_naming_the_culprit(case, tmp_path, capsys, monkeypatch):
    _, argv, setup, culprit = case
    monkeypatch.delenv("EMO_HF_DEBUG", raising=False)
    ctx = Ctx(tmp_path)
    if setup == "no-source":
        monkeypatch.delenv("EMO_HF_GOEMOTIONS", raising=False)
    elif setup is no_token:
        no_token(ctx, monkeypatch)
    elif setup is not None:
        setup(ctx)
    before = {str(p) for p in tmp_path.rglob("*")}
    capsys.readouterr()
    code = main(argv(ctx))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert culprit(ctx) in lines[0], lines[0]
    assert not ctx.out.exists(), "something was left at the output path"
    assert {str(p) for p in tmp_path.rglob("*")} - before == set(), "files were written"


def test_an_internal_error_exits_1_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    import emo_hf.export as export

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(export, "export_model", broken)
    model = make_model_folder(tmp_path / "model")
    monkeypatch.delenv("EMO_HF_DEBUG", raising=False)
    assert main(["export", str(model), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error ZeroDivisionError" in err and "--debug" in err
    assert main(["--debug", "export", str(model), str(tmp_path / "out")]) == 1
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv("EMO_HF_DEBUG", "1")
    assert main(["export", str(model), str(tmp_path / "out")]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_evaluate_on_validation_keeps_the_test_report_and_card(tmp_path):
    """The report goes to MODEL/validation_report, the model folder's report.json and README.md stay the test's."""
    from emo_hf.pipeline import report_dir

    model = tmp_path / "model"
    assert report_dir(model, "validation", None) == model / "validation_report"
    assert report_dir(model, "test", None) == model
    with pytest.raises(ValueError, match="test report"):
        report_dir(model, "validation", model)


@pytest.mark.parametrize("command", ["data", "train", "evaluate", "run", "predict", "export", "push", "ablate"])
def test_every_commands_help_prints_and_exits_0(command, capsys):
    # argparse %-formats help texts: a literal "1%" in a TrainSettings help once crashed `emo-hf train --help`.
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: emo-hf {command} ")
    if command in ("train", "run"):
        assert "--fixed-batch-shapes" in out and "~1% more rows" in out.replace("\n", " ").replace("  ", " ")
