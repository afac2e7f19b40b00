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
