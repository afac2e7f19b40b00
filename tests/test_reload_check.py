"""The reload check: a saved folder that does not reproduce the model in memory is reported, and one that does passes."""

import shutil

import pytest


def test_a_faithful_folder_passes_and_a_changed_head_is_reported(tiny_emo_model_dir, tmp_path, capsys):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from emo_hf.modeling import HEAD_FILE
    from emo_hf.pipeline import load_trained_model
    from emo_hf.reload_check import MAX_TOLERANCE, reload_check

    model = load_trained_model(tiny_emo_model_dir)
    texts = ["I love it", "this is awful and I am angry", "thanks so much!", "what?", "   "]
    same = reload_check(model, tiny_emo_model_dir, texts)
    assert same["ok"] is True and same["rows"] == 4  # the blank text is not scored
    assert same["max_abs_difference"] < 1e-5 and same["predict_proba"]["mean_abs_difference"] < 1e-6
    assert same["one_padded_batch"]["max_abs_difference"] < 1e-5  # the 4 texts in one batch, padded as trained

    changed = tmp_path / "model"
    shutil.copytree(tiny_emo_model_dir, changed)
    with safe_open(str(changed / HEAD_FILE), "pt") as handle:
        metadata = handle.metadata()
    head = load_file(str(changed / HEAD_FILE))
    head = {k: (v + 3.0 if k.endswith("bias") else v) for k, v in head.items()}  # what a wrong save would do
    save_file(head, str(changed / HEAD_FILE), metadata=metadata)
    different = reload_check(model, changed, texts)
    assert different["ok"] is False and different["max_abs_difference"] > MAX_TOLERANCE
    # It says where: the head's bias is the one tensor that differs, by the 3.0 added.
    where = different["differing_tensors"]
    assert where["tensors_differing"] == 1 and where["tensors"][0].startswith("score.bias: max |diff| 3")
    assert where["only_in_trained"] == where["only_in_reloaded"] == []
    assert "differing_tensors" not in same
    assert f"the saved model in {changed} does not reproduce the trained model" in capsys.readouterr().out
    assert model.training is False  # left as it was (load_trained_model returns it in eval mode)


def test_the_training_loop_path_is_compared_too(tiny_emo_model_dir, capsys):
    """A gap between the training loop's probabilities and the reloaded folder fails the check even when the model in
    memory and the folder agree (the Gemma-on-GPU case: in-run validation 0.526, reloaded 0.396)."""
    import numpy as np

    from emo_hf.pipeline import load_trained_model
    from emo_hf.reload_check import reload_check

    model = load_trained_model(tiny_emo_model_dir)
    texts = ["I love it", "this is awful", "thanks so much!"]
    faithful = model.predict_proba(texts)
    assert reload_check(model, tiny_emo_model_dir, texts, trainer_probabilities=faithful)["ok"] is True
    shifted = np.clip(faithful + 0.2, 0, 1)
    result = reload_check(model, tiny_emo_model_dir, texts, trainer_probabilities=shifted)
    assert result["ok"] is False and result["predict_proba"]["max_abs_difference"] < 1e-5
    assert result["training_loop"]["max_abs_difference"] >= 0.19
    assert "does not reproduce the trained model" in capsys.readouterr().out


def test_a_text_of_no_tokens_scores_as_in_training_whatever_its_batch(tiny_family_dirs):
    """The tiny Qwen2's word-level tokenizer drops unknown words, so 'Good luck my G' has no tokens at all. Training's
    collator gives such a row one filler token; prediction must do the same, or the row's attention mask is all zero
    and its scores follow the batch's padding (a real GoEmotions validation row, 0.10 apart, 2026-12-06)."""
    import numpy as np
    import torch

    from emo_hf.backbones import load_for_training
    from emo_hf.batching import BucketPaddingCollator, bucket_lengths

    torch.manual_seed(0)
    model = load_for_training(tiny_family_dirs["qwen2"], labels=["joy", "anger", "sadness"],
                              lora={"r": 4, "lora_alpha": 8}, max_length=32)
    model.eval()
    empty, others = "Good luck my G", ["i love this day so much", "why would you do that ? i hate it", "sad"]
    assert model.tokenizer(empty)["input_ids"] == []
    alone = model.predict_proba([empty])[0]
    beside_longer = model.predict_proba([empty] + others, batch_size=4)[0]
    rows = [{"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [0.0, 0.0, 0.0]}
            for ids in model.tokenizer([empty] + others)["input_ids"]]
    batch = BucketPaddingCollator(model.tokenizer, bucket_lengths(32))(rows)
    batch.pop("labels")
    with torch.no_grad():
        in_training = torch.sigmoid(model(**batch).logits[0]).numpy()
    np.testing.assert_allclose(alone, in_training, atol=1e-5)
    np.testing.assert_allclose(beside_longer, in_training, atol=1e-5)


def test_the_pipeline_scores_a_text_of_no_tokens_as_predict_proba(tiny_family_dirs, tmp_path):
    """transformers' pipeline tokenizes by itself, without predict_proba's filler: alone, such a text gave the
    backbone a batch of width 0 (a crash); beside longer texts, an all-zero attention-mask row. The forward fills
    it the same way (modeling_backbone.fill_empty_tensor_rows)."""
    import numpy as np
    import torch
    from transformers import pipeline

    from emo_hf.backbones import load_for_training

    torch.manual_seed(0)
    model = load_for_training(tiny_family_dirs["qwen2"], labels=["joy", "anger", "sadness"],
                              lora={"r": 4, "lora_alpha": 8}, max_length=32)
    model.eval()
    empty, others = "Good luck my G", ["i love this day so much", "why would you do that ? i hate it", "sad"]
    want = model.predict_proba([empty] + others)
    model.save_pretrained(tmp_path / "model")
    pipe = pipeline("text-classification", model=str(tmp_path / "model"), top_k=None)

    def scores(results):
        return np.array([[{r["label"]: r["score"] for r in result}[name] for name in ("joy", "anger", "sadness")]
                         for result in results])

    np.testing.assert_allclose(scores(pipe([empty])), want[:1], atol=1e-5)
    np.testing.assert_allclose(scores(pipe([empty] + others, batch_size=4)), want, atol=1e-5)
