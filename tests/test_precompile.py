"""`--precompile` (emo_hf.backbones.precompile): the stack scope's compiled training graph is saved on the first run,
loaded by the next one without tracing, gives eager's logits and LoRA gradients, and hands the calls it does not cover
(a one-row batch, which Dynamo specialises) to the usual torch.compile path. backend="aot_eager" as in
tests/test_compilation.py (inductor's code generation takes ~1 min per graph on the 2-core machine)."""

import json

import pytest
import torch

from test_compilation import TEXTS, _pair
from test_compilation import assert_matches_eager as _assert_matches

pytestmark = pytest.mark.skipif(not hasattr(torch.compiler, "load_compiled_function"), reason="needs torch >= 2.10")


def _compiled(model, folder):
    from emo_hf.backbones.compilation import compile_layers, stack_owner

    compile_layers(model.backbone, scope="stack", backend="aot_eager", precompile_dir=folder)
    return stack_owner(model.backbone).forward.precompiled


def test_saved_then_loaded_without_tracing_and_the_same_results(tiny_family_dirs, tmp_path):
    eager, first = _pair(tiny_family_dirs["qwen2"])
    saved = _compiled(first, tmp_path / "cache")
    _assert_matches(eager, first, 4, 8)
    assert saved.info["state"] == "compiled" and saved.info["saved"] is True
    folder = tmp_path / "cache" / saved.info["dir"].rsplit("/", 1)[-1]
    assert sorted(p.name for p in folder.iterdir()) == ["function.bin", "meta.json"]
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [folder.name]  # no staging folder left behind
    # Another process saving the same graph later (a second rank) keeps the folder that is there.
    from emo_hf.backbones.precompile import _forward_chain

    (folder / "marker").write_text("kept")
    external = {f"forward_{i}": f for i, f in enumerate(_forward_chain(saved.owner))}
    saved._save(saved.function, folder, external, replace=False)
    assert (folder / "marker").read_text() == "kept"
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [folder.name]

    second = _pair(tiny_family_dirs["qwen2"])[1]
    second.load_state_dict(eager.state_dict())
    loaded = _compiled(second, tmp_path / "cache")

    def no_tracing(*args, **kwargs):
        raise AssertionError("a call went to torch.compile's path, which traces")

    loaded.fallback, fallback = no_tracing, loaded.fallback
    for rows, pad_to in [(4, 8), (3, 16), (2, 24)]:  # new shapes: the loaded graph's sizes are symbolic
        _assert_matches(eager, second, rows, pad_to)
    assert loaded.info["state"] == "loaded" and loaded.info["dir"] == saved.info["dir"]
    assert loaded.info["fallback_calls"] == 0

    loaded.fallback = fallback  # one row: Dynamo specialised sizes 0 and 1, the saved shape guard refuses it
    _assert_matches(eager, second, 1, 8)
    assert loaded.info["fallback_calls"] == 1
    second.eval()  # train/eval mode is part of the call's signature: eval with gradients on goes to the fallback
    _assert_matches(eager.eval(), second, 2, 8)
    assert loaded.info["fallback_calls"] == 2


def test_another_lora_gets_its_own_file_and_a_broken_file_is_compiled_anew(tiny_family_dirs, tmp_path):
    from emo_hf.backbones import load_for_training

    eager, first = _pair(tiny_family_dirs["qwen2"])
    saved = _compiled(first, tmp_path)
    _assert_matches(eager, first, 2, 8)
    (tmp_path / saved.info["dir"].rsplit("/", 1)[-1] / "function.bin").write_bytes(b"truncated")

    other = load_for_training(tiny_family_dirs["qwen2"], labels=["joy", "anger", "fear"], lora={"r": 4}, max_length=32)
    other_info = _compiled(other, tmp_path)
    batch = other.tokenizer(TEXTS[:2], return_tensors="pt", padding=True)
    other(**batch, labels=torch.ones(2, 3)).loss.backward()
    assert other_info.info["state"] == "compiled" and other_info.info["dir"] != saved.info["dir"]

    again = _pair(tiny_family_dirs["qwen2"])[1]
    again.load_state_dict(eager.state_dict())
    rebuilt = _compiled(again, tmp_path)
    _assert_matches(eager, again, 2, 8)
    assert rebuilt.info["state"] == "compiled" and "load_error" in rebuilt.info  # said, then replaced
    assert json.loads((tmp_path / rebuilt.info["dir"].rsplit("/", 1)[-1] / "meta.json").read_text())["format"] == 1
    assert len(list(tmp_path.iterdir())) == 2


def test_precompile_needs_the_stack_scope(tiny_family_dirs, tmp_path):
    from emo_hf.backbones.compilation import compile_layers

    model = _pair(tiny_family_dirs["qwen2"])[1]
    with pytest.raises(ValueError, match="needs scope='stack'"):
        compile_layers(model.backbone, scope="layers", backend="aot_eager", precompile_dir=tmp_path)


def test_a_second_training_run_loads_the_first_runs_graph(goemotions_slice_data, tmp_path, monkeypatch):
    """The trainer's wiring (`compile_scope="stack"`, `precompile` on by default, `compile_cache`): the first run
    compiles and saves, the second loads, and training_info.json says so; a third with `--fixed-batch-shapes` (the
    qwen2.5-0.5b preset's batches: other row counts, filler rows weighed outside the stack) loads the same graph and
    sends no call to torch.compile (no one-row batch: each bucket's batches are full)."""
    from emo_hf.backbones import compilation
    from emo_hf.presets import get_preset
    from emo_hf.trainer import train

    real = compilation.compile_layers
    monkeypatch.setattr(compilation, "compile_layers",
                        lambda backbone, **kwargs: real(backbone, **{**kwargs, "backend": "aot_eager"}))
    settings = get_preset("tiny-random").replace(epochs=1, compile=True, compile_scope="stack",
                                                 compile_cache=str(tmp_path / "cache"), max_tokens_per_batch=256)
    infos = []
    for run, run_settings in (("first", settings), ("second", settings),
                              ("fixed", settings.replace(fixed_batch_shapes=True))):
        result = train(goemotions_slice_data, tmp_path / run, run_settings, show_progress=False)
        info = json.loads((result.model_dir / "training_info.json").read_text())
        infos.append(info["compile"]["precompile"])
        assert info["reload_check"]["ok"] is True
        assert info["batching"]["merged_sparse_buckets"] is (run == "fixed")
    assert infos[0]["state"] == "compiled" and infos[0]["saved"] is True
    assert infos[1]["state"] == "loaded" and infos[1]["dir"] == infos[0]["dir"]
    # Calls the saved graph does not cover (a one-row last batch, if any) go to torch.compile: few, and counted.
    assert infos[1]["fallback_calls"] <= 2
    assert infos[2]["state"] == "loaded" and infos[2]["dir"] == infos[0]["dir"] and infos[2]["fallback_calls"] == 0


def test_the_key_changes_with_what_the_graph_bakes_in(tiny_family_dirs):
    """LoRA's alpha is no parameter shape, but the trace reads its scaling as a constant: another alpha, another key;
    the same model loaded twice, the same key."""
    from emo_hf.backbones import load_for_training
    from emo_hf.backbones.compilation import stack_owner
    from emo_hf.backbones.precompile import cache_key

    def key(**lora):
        model = load_for_training(tiny_family_dirs["qwen2"], labels=["joy", "anger"], lora={"r": 2, **lora}, max_length=32)
        return cache_key(stack_owner(model.backbone), "call", {"mode": None})

    assert key() == key()
    assert key(lora_alpha=7) != key()


def test_the_shared_prefix_packed_call_is_saved_and_loaded(tiny_family_dirs, tmp_path):
    """--shared-prefix's packed batch (one row of P + B*L tokens, its own attention function on the config for the
    call): saved, loaded by a second model, eager's logits and LoRA gradients on two batch shapes."""
    from test_shared_prefix import TEXTS as PREFIX_TEXTS
    from test_shared_prefix import _assert_same, _collate, _instruction_model
    from test_shared_prefix import _logits_and_grads as prefix_logits_and_grads

    from emo_hf.shared_prefix import plan_shared_prefix

    eager = _instruction_model(tiny_family_dirs["qwen2"])
    records = []
    for _ in ("save", "load"):
        compiled = _instruction_model(tiny_family_dirs["qwen2"])
        compiled.load_state_dict(eager.state_dict())
        records.append(_compiled(compiled, tmp_path))
        prefix, _ = plan_shared_prefix(compiled)
        for texts in (PREFIX_TEXTS, PREFIX_TEXTS[:3]):
            batch = _collate(eager, prefix, texts)
            _assert_same(prefix_logits_and_grads(compiled, batch), prefix_logits_and_grads(eager, batch))
    assert [r.info["state"] for r in records] == ["compiled", "loaded"]
    assert [r.info["fallback_calls"] for r in records] == [0, 0]


@pytest.mark.parametrize("family", ["mistral", "llama", "qwen3", "gemma3", "phi3"])
def test_every_decoder_family_saves_and_loads(tiny_family_dirs, family, tmp_path):
    """Each family's decoder stack (Gemma 3: sliding and full attention layers; Phi-3: fused projections) goes
    through aot_compile, saves, and loads in a second model with eager's results."""
    eager, first = _pair(tiny_family_dirs[family])
    saved = _compiled(first, tmp_path)
    _assert_matches(eager, first, 3, 16)
    second = _pair(tiny_family_dirs[family])[1]
    second.load_state_dict(eager.state_dict())
    loaded = _compiled(second, tmp_path)
    _assert_matches(eager, second, 2, 24)
    assert (saved.info["state"], loaded.info["state"]) == ("compiled", "loaded"), (saved.info, loaded.info)
    assert loaded.info["fallback_calls"] == 0


def test_compile_cache_without_the_stack_scope_is_refused_with_the_corrected_call():
    from emo_hf.presets import get_preset

    settings = get_preset("tiny-random")
    with pytest.raises(ValueError, match="--compile --compile-scope stack --compile-cache /x"):
        settings.replace(compile_cache="/x")
    with pytest.raises(ValueError, match="used only by --precompile"):
        settings.replace(compile=True, compile_scope="stack", precompile=False, compile_cache="/x")
    assert settings.replace(compile=True, compile_scope="stack", compile_cache="/x").compile_cache == "/x"


_KEY_SCRIPT = """
import sys
from emo_hf.backbones import load_for_training
from emo_hf.backbones.compilation import stack_owner
from emo_hf.backbones.precompile import cache_key
model = load_for_training(sys.argv[1], labels=["joy", "anger"], lora={"r": 2}, max_length=32)
print("KEY", cache_key(stack_owner(model.backbone), "call", {"mode": None}))
"""


def test_the_key_is_the_same_in_every_process(tiny_family_dirs, tmp_path):
    """Two processes whose string hashing differs (PYTHONHASHSEED 1 and 2 print the rotary module's set of buffer
    names in two orders) compute one key for one model: a later run finds what an earlier one saved."""
    import os
    import subprocess
    import sys

    from pathlib import Path

    import emo_hf

    script = tmp_path / "key.py"
    script.write_text(_KEY_SCRIPT)
    # The children import the emo_hf this test imported (the checkout's, not an older installed copy).
    path = os.pathsep.join([str(Path(emo_hf.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])
    runs = [subprocess.Popen([sys.executable, str(script), tiny_family_dirs["qwen2"]], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": path})
            for seed in ("1", "2")]
    keys = [[line for line in run.communicate(timeout=300)[0].splitlines() if line.startswith("KEY ")] for run in runs]
    assert keys[0] and keys[0] == keys[1]
