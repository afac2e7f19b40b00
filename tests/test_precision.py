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
    # As the minilm preset: 2 epochs with bf16, 1 where float32 halves the work rate (the main job's time budget).
    settings = get_preset("tiny-random").replace(epochs=2, bf16=True, float32_epochs=1)
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda *a: False)
    dropped = train(goemotions_slice_data, tmp_path / "old-cpu", settings, show_progress=False)
    out = capsys.readouterr().out
    assert "--bf16 not applied: this CPU has no native bfloat16" in out
    assert "training 1 epoch(s) in float32 instead of 2" in out and "pass --epochs 2" in out
    info = json.loads((dropped.model_dir / "training_info.json").read_text())
    assert info["settings"]["bf16"] is False and info["hyperparameters"]["bf16"] is False
    assert info["settings"]["epochs"] == 1 and info["epochs_run"] == 1
    saved = json.loads((tmp_path / "old-cpu" / "train_settings.json").read_text())
    assert saved["bf16"] is False and saved["epochs"] == 1

    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda *a: True)
    native = train(goemotions_slice_data, tmp_path / "native", settings, show_progress=False)
    info = json.loads((native.model_dir / "training_info.json").read_text())
    assert info["settings"]["bf16"] is True and info["reload_check"]["ok"] is True and info["epochs_run"] == 2
    assert "not applied" not in capsys.readouterr().out


def test_run_info_records_the_settings_that_trained_and_the_ones_asked_for(goemotions_slice_data, tmp_path,
                                                                           monkeypatch):
    import torch

    from emo_hf import precision
    from emo_hf.pipeline import run_pipeline
    from emo_hf.presets import get_preset

    if torch.cuda.is_available():
        pytest.skip("with a GPU the bf16 choice is the GPU's: this is the CPU path")
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda *a: False)
    asked = get_preset("tiny-random").replace(epochs=2, bf16=True, float32_epochs=1, reload_check_rows=0)
    run_pipeline(None, tmp_path / "run", asked, data_dir=goemotions_slice_data, baselines=False, show_progress=False)
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert (info["settings"]["epochs"], info["settings"]["bf16"]) == (1, False)
    assert (info["requested_settings"]["epochs"], info["requested_settings"]["bf16"]) == (2, True)


def test_the_cpu_preset_trains_one_float32_epoch_unless_epochs_are_given():
    from emo_hf.presets import get_preset

    minilm = get_preset("minilm")
    assert (minilm.epochs, minilm.float32_epochs, minilm.bf16) == (2, 1, True)
    assert minilm.replace(epochs=3).float32_epochs is None  # --epochs 3 means 3, whatever the precision
    assert minilm.replace(epochs=3, float32_epochs=2).float32_epochs == 2
    assert minilm.replace(learning_rate=1e-4).float32_epochs == 1
    with pytest.raises(ValueError, match=r"float32_epochs=0 must be positive, e\.g\. --float32-epochs 1"):
        minilm.replace(float32_epochs=0)
