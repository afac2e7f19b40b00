"""The package's GPU-only branches, checked on a CPU: CI never has a GPU, so a misspelt `torch.cuda` call there
would first fail on a rented card, after training (2026-12-06: `torch.cuda.getdevice_name` in training_record.py
ended a real H100 run's `emo-hf train` after its 2 epochs, before training_info.json was written)."""

from __future__ import annotations

import ast
from pathlib import Path

import torch

PACKAGE = Path(__file__).resolve().parents[1] / "emo_hf"


def _torch_cuda_attributes(tree: ast.AST) -> set[str]:
    """Names X used as `torch.cuda.X` in a module's syntax tree."""
    found = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "cuda"
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "torch"):
            found.add(node.attr)
    return found


def test_every_torch_cuda_call_in_the_package_exists():
    used = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for name in _torch_cuda_attributes(ast.parse(path.read_text(), filename=str(path))):
            used.setdefault(name, []).append(path.relative_to(PACKAGE.parent).as_posix())
    assert "max_memory_allocated" in used  # the walk sees the package's real calls
    missing = {name: files for name, files in used.items() if not hasattr(torch.cuda, name)}
    assert not missing, f"torch.cuda has no such attribute: {missing}"


def test_device_name_on_a_gpu_names_the_card(monkeypatch):
    from emo_hf.training_record import device_name

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: f"NVIDIA H100 80GB HBM3 #{index}")
    assert device_name() == "NVIDIA H100 80GB HBM3 #0"


def test_device_name_on_a_cpu_names_the_cores(monkeypatch):
    from emo_hf.training_record import device_name

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_name().startswith("CPU (") and "cores)" in device_name()


def test_the_gpu_training_path_check_passes_on_a_cpu(goemotions_slice_data, tmp_path):
    """scripts/gpu_train_check.py (emo_hf.trainer.train, then `emo-hf evaluate`, on a tiny random Qwen2) on the CPU:
    every check it makes on a GPU holds here too. Its first run found prediction and training scoring a text of no
    tokens differently (tests/test_reload_check.py)."""
    import importlib.util
    import json

    path = PACKAGE.parent / "scripts" / "gpu_train_check.py"
    spec = importlib.util.spec_from_file_location("gpu_train_check", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    result = tmp_path / "check.json"
    code = script.main(["--data", str(goemotions_slice_data), "--cpu", "--train-rows", "200", "--json", str(result)])
    report = json.loads(result.read_text())
    assert code == 0 and report["passed"] is True, report["checks"]
    names = [name for name, _, _ in report["checks"]]
    assert "training_info.json names the device" in names and len(names) == 7
    assert "the saved model reloads to the trained model's probabilities" in names
