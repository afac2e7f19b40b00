"""Publishing round trips with real (tiny) trained-model objects: export -> load from the folder, and push to the
stand-in Hub (tests/hub_server.py) -> `from_pretrained("org/name")` in a fresh process through HF_ENDPOINT, both
with `import emo_hf` and with `trust_remote_code=True` where emo_hf cannot be imported. Predictions must be identical
and the pushed thresholds present and applied.

Two models on conftest's tiny random Mistral: "full" (no LoRA: the whole backbone is saved in backbone.safetensors)
and "lora" (LoRA adapter + head, base weights saved too so the pushed repo is self-contained)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from hub_server import TOKEN, HubServer, subprocess_env

torch = pytest.importorskip("torch")

LABELS = ["joy", "anger", "sadness"]
TEXTS = ["i love this day", "why would you do that !", "so sad", "what a great day . thank you very much"]
THRESHOLDS = [0.3, 0.5, 0.7]

LOAD = """
import json, sys
{block}
from transformers import AutoModel
results = {{}}
for name in sys.argv[2:]:
    try:
        model = AutoModel.from_pretrained("my-org/" + name{flag})
        results[name] = {{
            "class": type(model).__module__ + "." + type(model).__name__,
            "probs": model.predict_proba(json.loads(sys.argv[1])).tolist(),
            "predict": model.predict(json.loads(sys.argv[1])),
            "thresholds": list(model.config.thresholds),
        }}
    except Exception as error:  # reported per model, so one failure does not hide the other's result
        results[name] = {{"error": f"{{type(error).__name__}}: {{error}}"}}
print("RESULT " + json.dumps(results))
"""
BLOCK_EMO_HF = """
import importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "emo_hf" or name.startswith("emo_hf."):
            raise ImportError("emo_hf is blocked in this test")
sys.meta_path.insert(0, Block())
"""


def _trained_like(tiny_mistral_dir: str, lora: bool):
    from emo_hf.backbones import load_for_training

    torch.manual_seed(0)
    model = load_for_training(tiny_mistral_dir, labels=LABELS, lora={"r": 4, "lora_alpha": 8} if lora else None,
                              max_length=16, device="cpu")
    with torch.no_grad():  # random LoRA B and head, so that a missing or random part changes the predictions
        for name, param in model.named_parameters():
            if "lora_B" in name or name.startswith("score."):
                param.normal_(0, 0.5)
    model.set_thresholds(THRESHOLDS)
    return model.eval()


@pytest.fixture(scope="module")
def published(tiny_mistral_dir, tmp_path_factory):
    """Both models saved, exported, pushed to one stand-in Hub, then loaded back in two fresh processes."""
    import os

    from emo_hf.export import export_model, push_model

    root = tmp_path_factory.mktemp("publish")
    server = HubServer(tokens={TOKEN: "tester"}).start()
    saved = {}
    try:
        for name, lora in (("full", False), ("lora", True)):
            model = _trained_like(tiny_mistral_dir, lora)
            # The tiny backbone only exists on this machine: ship its weights so the pushed repo is self-contained.
            model.save_pretrained(root / name, save_base_weights=True)
            saved[name] = {"folder": root / name, "probs": model.predict_proba(TEXTS).tolist(),
                           "predict": model.predict(TEXTS),
                           "export": export_model(root / name, root / f"{name}-export", repo_id=f"my-org/{name}")}
        env_before = dict(os.environ)
        os.environ.update(HF_ENDPOINT=server.url, HF_TOKEN=TOKEN)
        try:
            for name in saved:
                push_model(saved[name]["folder"], f"my-org/{name}")
        finally:
            os.environ.clear()
            os.environ.update(env_before)
        loaded = {}
        for variant, block, flag in (("emo_hf", "import emo_hf", ""),
                                     ("remote_code", BLOCK_EMO_HF, ", trust_remote_code=True")):
            env = subprocess_env(server, root / variant)
            env["HF_MODULES_CACHE"] = str(root / variant / "modules")
            if variant == "remote_code":
                env.pop("PYTHONPATH", None)  # emo_hf comes only from the repo's own code files
            run = subprocess.run([sys.executable, "-c", LOAD.format(block=textwrap.dedent(block), flag=flag),
                                  json.dumps(TEXTS), *saved], env=env, capture_output=True, text=True,
                                 timeout=600, stdin=subprocess.DEVNULL, cwd=root)
            # Not line-anchored: transformers may print a prompt without a newline before it (see the report).
            assert run.returncode == 0 and "RESULT " in run.stdout, run.stderr[-3000:]
            loaded[variant] = json.loads(run.stdout.rsplit("RESULT ", 1)[1].splitlines()[0])
            loaded[variant]["_stdout"] = run.stdout.rsplit("RESULT ", 1)[0]
        yield saved, loaded, server
    finally:
        server.stop()


def test_export_then_load_from_the_folder_predicts_identically(published):
    from transformers import AutoModel

    import emo_hf  # noqa: F401  (registers the Auto classes)

    saved, _, _ = published
    for name, entry in saved.items():
        model = AutoModel.from_pretrained(str(entry["export"]))
        assert model.predict_proba(TEXTS).tolist() == entry["probs"], name
        assert list(model.config.thresholds) == THRESHOLDS


@pytest.mark.parametrize("variant", ["emo_hf", "remote_code"])
def test_pushed_full_model_loads_in_a_fresh_process_and_predicts_identically(published, variant):
    saved, loaded, server = published
    result = loaded[variant]["full"]
    assert "error" not in result, result
    assert result["class"].endswith("EmoModelForMultiLabel")
    assert result["class"].startswith("transformers_modules") == (variant == "remote_code")
    assert result["probs"] == saved["full"]["probs"]
    assert result["thresholds"] == THRESHOLDS
    assert result["predict"] == saved["full"]["predict"]  # the thresholds are applied, not 0.5
    files = server.files("my-org/full")
    assert json.loads(files["thresholds.json"]) == dict(zip(LABELS, THRESHOLDS))


@pytest.mark.parametrize("variant", ["emo_hf", "remote_code"])
def test_pushed_lora_model_loads_in_a_fresh_process_and_predicts_identically(published, variant):
    # With adapter_config.json at the repo root, transformers' AutoModel.from_pretrained(hub_id) took the repo for a
    # PEFT adapter repo and loaded adapter_config['base_model_name_or_path'] instead (auto_factory.py,
    # find_adapter_config_file; local folders are exempt): the adapter now lives in adapter/.
    saved, loaded, _ = published
    result = loaded[variant]["lora"]
    assert "error" not in result, result
    assert result["class"].endswith("EmoModelForMultiLabel")
    assert result["class"].startswith("transformers_modules") == (variant == "remote_code")
    assert result["probs"] == saved["lora"]["probs"]
    assert result["thresholds"] == THRESHOLDS
    assert result["predict"] == saved["lora"]["predict"]


@pytest.mark.parametrize("variant", ["emo_hf", "remote_code"])
def test_loading_from_the_hub_never_prompts(published, variant):
    # transformers prints "Do you wish to run the custom code? [y/N]" and waits when something (e.g. the tokenizer's
    # AutoConfig lookup) meets config.json's auto_map without trust_remote_code; stdin is closed here, so it would
    # show in stdout before falling back.
    _, loaded, _ = published
    assert "Do you wish to run the custom code" not in loaded[variant]["_stdout"], loaded[variant]["_stdout"][-2000:]


def test_pushed_files_and_card_hold_no_token(published):
    _, _, server = published
    for name in ("full", "lora"):
        for path, content in server.files(f"my-org/{name}").items():
            assert TOKEN.encode() not in content, path
        assert "my-org/" + name in server.files(f"my-org/{name}")["README.md"].decode()


def test_lora_repo_keeps_its_adapter_files(published):
    _, _, server = published
    files = set(server.files("my-org/lora"))
    assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors", "head.safetensors",
            "thresholds.json", "configuration.py", "modeling.py", "README.md"} <= files
    assert "adapter_config.json" not in files and "adapter_model.safetensors" not in files  # never at the root
