"""emo_hf.export and the `emo-hf export` / `emo-hf push` commands on a fabricated model folder (tests/fake_model.py),
pushed to the stand-in Hub (tests/hub_server.py). Round trips with a trained model (identical predictions after
export and after push) live with the model tests, which have a real trained model to compare."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fake_model import LABELS, make_model_folder
from huggingface_hub import ModelCard
from hub_server import TOKEN, hub, subprocess_env  # noqa: F401  (hub is a pytest fixture)

from emo_hf.cli import main
from emo_hf.export import check_model_folder, export_model, push_model

EXPECTED = {"README.md", "config.json", "thresholds.json", "head.safetensors", "adapter/adapter_config.json",
            "adapter/adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json", "configuration.py", "modeling.py",
            "report.json", "report.md", "training_info.json", "per_label_f1.png", "label_counts.png",
            "label_balance.png"}


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = make_model_folder(tmp_path / "model")
    (folder / "checkpoint-10").mkdir()  # Trainer leftovers are not part of the model
    (folder / "checkpoint-10" / "optimizer.pt").write_bytes(b"\0" * 16)
    (folder / "README.md").write_text("stale card")
    return folder


def edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def test_export_copies_the_model_files_and_regenerates_the_card(model_dir: Path, tmp_path: Path):
    out = export_model(model_dir, tmp_path / "export", repo_id="my-org/emo-minilm")
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} == EXPECTED
    for name in EXPECTED - {"README.md"}:
        assert (out / name).read_bytes() == (model_dir / name).read_bytes(), name
    card = ModelCard.load(out / "README.md")
    assert "stale card" not in str(card)
    assert 'from_pretrained("my-org/emo-minilm", trust_remote_code=True)' in card.text
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []


def test_export_replaces_an_earlier_export_but_nothing_else(model_dir: Path, tmp_path: Path):
    out = export_model(model_dir, tmp_path / "export")
    (out / "old-file.txt").write_text("from the earlier export")
    export_model(model_dir, out)
    assert not (out / "old-file.txt").exists()
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not an earlier emo_hf export"):
        export_model(model_dir, other)
    assert (other / "mine.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="inside"):
        export_model(model_dir, model_dir / "export")


def test_a_failed_export_leaves_no_folder_and_no_temporary_files(model_dir: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch):
    import emo_hf.model_card

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(emo_hf.model_card, "write_model_card", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export_model(model_dir, tmp_path / "export")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / "head.safetensors").unlink(), "head.safetensors is missing"),
        (lambda f: (f / "thresholds.json").unlink(), "thresholds.json is missing"),
        (lambda f: (f / "modeling.py").unlink(), "modeling.py is missing"),
        # a sibling that modeling.py imports: trust_remote_code would fail to fetch it
        (lambda f: (f / "modeling.py").write_text("from .modeling_files import load_head\n"),
         "modeling_files.py is missing"),
        (lambda f: (f / "modeling.py").write_text("def broken(:\n"), "modeling.py is not valid Python"),
        (lambda f: (f / "adapter" / "adapter_model.safetensors").unlink(),
         "adapter/adapter_model.safetensors is missing.*LoRA"),
        # The older layout, adapter at the root: a Hub repo of it would load as a bare PEFT adapter repo.
        (lambda f: (f / "adapter" / "adapter_config.json").rename(f / "adapter_config.json"), "at the folder root"),
        (lambda f: (f / "tokenizer_config.json").unlink(), "tokenizer"),
        (lambda f: (f / "thresholds.json").write_text(json.dumps({"joy": 0.5})), "thresholds.json must map each label"),
        (lambda f: edit_config(f, auto_map=None), "auto_map"),
        (lambda f: edit_config(f, id2label={"0": "joy", "1": "anger"}), "head.safetensors was trained for labels"),
    ],
)
def test_an_incomplete_model_folder_is_refused_with_what_is_missing(model_dir: Path, tmp_path: Path, damage, message):
    damage(model_dir)
    with pytest.raises((FileNotFoundError, ValueError), match=message) as raised:
        export_model(model_dir, tmp_path / "export")
    assert "save the model again" in str(raised.value) or "emo-hf train" in str(raised.value)
    assert not (tmp_path / "export").exists()


def test_the_model_code_travels_whole(model_dir: Path, tmp_path: Path):
    """Every file modeling.py imports relatively, and what those import, is exported: the split model code of a model
    saved now (emo_hf.modeling_files.REMOTE_CODE_FILES); the Trainer's leftovers and other .py files are not."""
    (model_dir / "modeling.py").write_text("from .configuration import EmoConfig\nfrom .modeling_files import x\n")
    (model_dir / "modeling_files.py").write_text("from .modeling_backbone import y\n")
    (model_dir / "modeling_backbone.py").write_text("import torch\n")
    (model_dir / "notes.py").write_text("print('not model code')\n")
    exported = {p.relative_to(tmp_path / "export").as_posix()
                for p in export_model(model_dir, tmp_path / "export").rglob("*") if p.is_file()}
    assert exported == EXPECTED | {"modeling_files.py", "modeling_backbone.py"}


def test_not_an_emo_hf_model(tmp_path: Path, model_dir: Path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_model_folder(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        check_model_folder(tmp_path)
    edit_config(model_dir, model_type="bert")
    with pytest.raises(ValueError, match="model_type 'bert', not 'emo_multilabel'"):
        check_model_folder(model_dir)


def test_model_without_lora_needs_no_adapter(tmp_path: Path):
    folder = make_model_folder(tmp_path / "plain", lora=False, report=False, training_info=False)
    out = export_model(folder, tmp_path / "export")
    assert not (out / "adapter").exists() and not (out / "adapter_model.safetensors").exists()
    assert (out / "README.md").is_file()


def test_cli_export(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    assert main(["export", str(model_dir), str(tmp_path / "export")]) == 0
    assert (tmp_path / "export" / "README.md").is_file()
    assert main(["export", str(model_dir), str(tmp_path / "export2"), "--repo-id", "not a repo"]) == 2
    assert "my-org/emo-minilm" in capsys.readouterr().err


def test_cli_push_uploads_the_export_in_one_commit(hub, model_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture):
    code = main(["push", str(model_dir), "--repo-id", "my-org/emo-minilm", "--private", "--revision", "v1",
                 "--commit-message", "Model v1"])
    assert code == 0, capsys.readouterr().err
    repo = hub.repo("my-org/emo-minilm")
    assert repo.private and repo.commits[repo.branches["v1"]].message == "Model v1"
    files = hub.files("my-org/emo-minilm", revision="v1")
    assert set(files) == EXPECTED | {".gitattributes"}
    exported = export_model(model_dir, tmp_path / "export", repo_id="my-org/emo-minilm")
    for name in EXPECTED:
        assert files[name] == (exported / name).read_bytes(), name
    assert "checkpoint-10/optimizer.pt" not in files
    assert f"{hub.url}/my-org/emo-minilm/commit/{repo.branches['v1']}" in capsys.readouterr().out


def test_pushed_card_and_thresholds_download_in_a_fresh_process(hub, model_dir: Path, tmp_path: Path):
    push_model(model_dir, "my-org/emo-minilm")
    code = ("import json, sys; from huggingface_hub import ModelCard, hf_hub_download; "
            "card = ModelCard.load('my-org/emo-minilm'); "
            "t = json.load(open(hf_hub_download('my-org/emo-minilm', 'thresholds.json'))); "
            "print(json.dumps({'index': {r.metric_config: r.metric_value for r in card.data.eval_results}, 't': t}))")
    run = subprocess.run([sys.executable, "-c", code], env=subprocess_env(hub, tmp_path), capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    report = json.loads((model_dir / "report.json").read_text())
    assert got["index"] == {"subset": report["metrics_tuned"]["subset_accuracy"],
                            "micro": report["metrics_tuned"]["micro_f1"], "macro": report["metrics_tuned"]["macro_f1"]}
    assert got["t"] == json.loads((model_dir / "thresholds.json").read_text()) and list(got["t"]) == LABELS


def test_push_refuses_before_any_request(hub, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture):
    # A backbone that only exists on this machine could not be loaded from the Hub.
    local = make_model_folder(tmp_path / "local", training_info=False)
    edit_config(local, backbone_name_or_path=str(tmp_path))
    with pytest.raises(ValueError, match="backbone_name_or_path .* is not a Hub id"):
        push_model(local, "my-org/emo-minilm")
    # Same for the sentence encoder of an embedding-mode model.
    embedding = make_model_folder(tmp_path / "embedding", training_info=False)
    edit_config(embedding, input_mode="embedding", encoder_name=str(tmp_path))
    with pytest.raises(ValueError, match="sentence encoder .* is not a Hub id"):
        push_model(embedding, "my-org/emo-minilm")
    # No token: exit code 2 and the fix, not a traceback.
    monkeypatch.delenv("HF_TOKEN")
    assert main(["push", str(model_dir), "--repo-id", "my-org/emo-minilm"]) == 2
    assert "HF_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with pytest.raises(ValueError, match="namespace/name"):
        push_model(model_dir, "emo-minilm")
    assert hub.requests == []


def test_no_heavy_import_at_cli_import():
    run = subprocess.run([sys.executable, "-c", "import sys, emo_hf.commands.export, emo_hf.commands.push, "
                          "emo_hf.export, emo_hf.hub, emo_hf.model_card; "
                          "print(sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"

