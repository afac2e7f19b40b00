"""bf16 autocast on a CPU: used where the CPU computes bfloat16 natively, dropped (with a line and the record saying
so) where it would be emulated and slower than float32."""

import json

import pytest


def test_cpu_flags_decide_native_bfloat16(tmp_path):
    from emo_hf.precision import cpu_supports_bf16

    zen5 = tmp_path / "zen5"
    zen5.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n")
    old = tmp_path / "old"
    old.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n")
    assert cpu_supports_bf16(zen5) and cpu_supports_bf16(arm)
    assert not cpu_supports_bf16(old) and not cpu_supports_bf16(tmp_path / "missing")


def test_train_drops_bf16_on_a_cpu_without_it_and_uses_it_where_native(goemotions_slice_data, tmp_path,
                                                                         monkeypatch, capsys):
    import torch

    from emo_hf import precision
    from emo_hf.presets import get_preset
    from emo_hf.trainer import train

    if torch.cuda.is_available():
        pytest.skip("with a GPU the bf16 choice is the GPU's: this is the CPU path")
    settings = get_preset("tiny-random").replace(epochs=1, bf16=True)
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda *a: False)
    dropped = train(goemotions_slice_data, tmp_path / "old-cpu", settings, show_progress=False)
    assert "--bf16 not applied: this CPU has no native bfloat16" in capsys.readouterr().out
    info = json.loads((dropped.model_dir / "training_info.json").read_text())
    assert info["settings"]["bf16"] is False and info["hyperparameters"]["bf16"] is False
    assert json.loads((tmp_path / "old-cpu" / "train_settings.json").read_text())["bf16"] is False

    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda *a: True)
    native = train(goemotions_slice_data, tmp_path / "native", settings, show_progress=False)
    info = json.loads((native.model_dir / "training_info.json").read_text())
    assert info["settings"]["bf16"] is True and info["reload_check"]["ok"] is True
    assert "not applied" not in capsys.readouterr().out
