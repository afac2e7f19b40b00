"""The generated model card: valid Hub metadata, values equal to report.json, no template syntax, nothing made up."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from fake_model import LABELS, make_model_folder
from huggingface_hub import ModelCard

from emo_hf.model_card import MODEL_INDEX_METRICS, read_template, render_model_card, write_model_card

REPO_ROOT = Path(__file__).resolve().parent.parent
# What must never survive rendering: jinja syntax, and words that mark a placeholder.
LEFTOVERS = re.compile(r"\{\{|\}\}|\{%|%\}|\{#|#\}|TODO|TBD|FIXME|placeholder|\[More Information Needed\]|lorem",
                       re.IGNORECASE)


@pytest.fixture
def model_folder(tmp_path: Path) -> Path:
    return make_model_folder(tmp_path / "emo-minilm")


def test_card_loads_and_model_index_equals_report(model_folder: Path):
    path = write_model_card(model_folder, repo_id="my-org/emo-minilm")
    card = ModelCard.load(path)  # parses the YAML block as the Hub does
    report = json.loads((model_folder / "report.json").read_text())
    data = card.data
    assert data.pipeline_tag == "text-classification"
    assert data.library_name == "transformers"
    assert data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert data.datasets == ["google-research-datasets/go_emotions"]
    assert data.language == "en" and data.license == "apache-2.0"
    assert "emo_hf" in data.tags
    by_config = {result.metric_config: result for result in data.eval_results}
    names = {"subset_accuracy": "subset", "micro_f1": "micro", "macro_f1": "macro"}
    assert set(by_config) == {names[key] for key in MODEL_INDEX_METRICS}
    for key in MODEL_INDEX_METRICS:
        result = by_config[names[key]]
        assert result.metric_value == report["metrics_tuned"][key]  # exact, not rounded
        assert result.dataset_split == "test"
        assert result.task_type == "text-classification"


def test_card_body_has_every_section_and_no_template_leftovers(model_folder: Path):
    text = render_model_card(model_folder, repo_id="my-org/emo-minilm")
    assert not LEFTOVERS.search(text), LEFTOVERS.search(text)
    for heading in ["## How to load", "## Results", "### Per label", "## Training data", "### Balancing",
                    "## Training hyperparameters", "## Evaluation protocol", "## Limitations", "## Citation"]:
        assert heading in text
    assert 'AutoModel.from_pretrained("my-org/emo-minilm", trust_remote_code=True)' in text
    assert "import emo_hf" in text
    report = json.loads((model_folder / "report.json").read_text())
    # Every per-label row, with its support and its threshold, is in the table.
    for row in report["per_label"]:
        assert re.search(rf"^\| {row['label']} \| {row['precision']:.4f} \| {row['recall']:.4f} \| {row['f1']:.4f} \|"
                         rf".* \| {row['support']} \| {row['threshold']:g} \|$", text, re.MULTILINE), row["label"]
    # Labels with small test support are named in the limitations, the others are not.
    limitations = text.split("## Limitations")[1].split("## Citation")[0]
    for row in report["per_label"]:
        assert (f"{row['label']} ({row['support']})" in limitations) == (row["support"] < 50)
    assert "Reddit" in limitations
    # Balancing counts before/after and the chart that exists in the folder.
    info = json.loads((model_folder / "training_info.json").read_text())
    first = LABELS[0]
    before, after = info["data"]["label_counts_before"][first], info["data"]["label_counts_after"][first]
    assert f"| {first} | {before} | {after} |" in text
    assert "![Examples per label before and after balancing](label_balance.png)" in text
    assert "@inproceedings{demszky2020goemotions" in text and "reimers-2019-sentence-bert" in text


def test_card_without_report_leaves_results_out(tmp_path: Path):
    folder = make_model_folder(tmp_path / "plain", report=False, training_info=False, lora=False)
    text = render_model_card(folder)
    card = ModelCard(text)
    assert not card.data.eval_results and "model-index" not in text
    for heading in ["## Results", "### Per label", "## Training data", "## Training hyperparameters",
                    "## Evaluation protocol"]:
        assert heading not in text
    # What is known is still there: labels, thresholds (from thresholds.json), loading, limitations.
    thresholds = json.loads((folder / "thresholds.json").read_text())
    for label, value in thresholds.items():
        assert f"| {label} | {value:g} |" in text
    assert 'from_pretrained("./plain", trust_remote_code=True)' in text
    assert "GoEmotions" not in text and "Reddit" not in text and "LoRA" not in text
    assert not LEFTOVERS.search(text)


def test_card_never_shows_a_chart_or_plot_that_is_not_in_the_folder(model_folder: Path):
    (model_folder / "label_balance.png").unlink()
    (model_folder / "per_label_f1.png").unlink()
    text = render_model_card(model_folder)
    assert "](label_balance.png)" not in text and "](per_label_f1.png)" not in text
    assert "## Training data" in text  # the counts are still known


def test_local_backbone_path_is_not_published_as_base_model(tmp_path: Path):
    folder = make_model_folder(tmp_path / "local", training_info=False)
    config = json.loads((folder / "config.json").read_text())
    config["backbone_name_or_path"] = str(tmp_path)  # a folder on this machine, meaningless on the Hub
    (folder / "config.json").write_text(json.dumps(config))
    card = ModelCard(render_model_card(folder))
    assert card.data.base_model is None
    assert str(tmp_path) not in str(card)


def test_template_source_copy_is_what_read_template_returns():
    assert read_template() == (REPO_ROOT / "model_card_template.md").read_text(encoding="utf-8")


def test_template_ships_in_the_wheel_and_reads_from_an_installed_copy(tmp_path: Path):
    pytest.importorskip("hatchling", reason="building the wheel needs hatchling (pip install hatchling)")
    source = tmp_path / "src"
    # Build from a copy so the build's own files never land in the working tree.
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(".git", "runs", "tmp", "__pycache__", "*.egg-info",
                                                                      ".pytest_cache", "bench", "docs", "space"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", str(source),
                            "-w", str(tmp_path / "dist")], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("emo_hf-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        assert "emo_hf/model_card_template.md" in archive.namelist()
        archive.extractall(tmp_path / "installed")
    # A fresh interpreter that imports emo_hf from the unpacked wheel (no source checkout around it).
    code = ("import emo_hf, emo_hf.model_card as m, pathlib; "
            "assert pathlib.Path(emo_hf.__file__).parent.parent == pathlib.Path.cwd(), emo_hf.__file__; "
            "print(len(m.read_template()))")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path / "installed", capture_output=True, text=True,
                         env={"PYTHONPATH": str(tmp_path / "installed"), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert int(run.stdout) == len(read_template())


def test_card_says_whether_the_saved_folder_reproduced_the_trained_model(model_folder: Path):
    info_path = model_folder / "training_info.json"
    info = json.loads(info_path.read_text())
    info["reload_check"] = {"ok": True, "rows": 256, "max_abs_difference": 0.0012}
    info_path.write_text(json.dumps(info))
    card = render_model_card(model_folder)
    assert "reproduced the trained model's probabilities on 256 validation texts (largest difference 0.0012)" in card
    assert "Treat this model as suspect" not in card

    info["reload_check"] = {"ok": False, "rows": 256, "max_abs_difference": 0.41}
    info_path.write_text(json.dumps(info))
    card = render_model_card(model_folder)
    limitations = card.split("## Limitations", 1)[1]
    assert limitations.lstrip().startswith("- **Warning:** after training, this folder reloaded did not reproduce")
    assert "differed by up to 0.4100" in limitations and "reproduced the trained model's" not in card
