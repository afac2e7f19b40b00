"""The lean LoRA forward (emo_hf.backbones.lean_lora): bit for bit peft's results and gradients on every family, and
peft's own forward wherever the case is not the plain one (adapters disabled, merged, DoRA)."""

import pytest
import torch

LABELS = ["joy", "anger", "fear"]
TEXTS = ["i love this", "so sad that day was awful", "what a great day !", "why would you do that ?"]


def _pair(folder, lora):
    from emo_hf.backbones import load_for_training

    peft_model = load_for_training(folder, labels=LABELS, lora=lora, max_length=32)
    lean_model = load_for_training(folder, labels=LABELS, lora=lora, max_length=32)
    lean_model.load_state_dict(peft_model.state_dict())
    for model in (peft_model, lean_model):
        model.dropout.p = 0.0
        for name, param in model.named_parameters():  # lora_B starts at 0: give the LoRA branch something to add
            if "lora_B" in name:
                torch.nn.init.normal_(param, std=0.5, generator=torch.Generator().manual_seed(len(name)))
    return peft_model, lean_model


def _step(model, batch, labels, seed=0):
    torch.manual_seed(seed)  # the same dropout masks for both models
    model.zero_grad()
    out = model(**batch, labels=labels)
    out.loss.backward()
    return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _lora_linears(model):
    from peft.tuners.lora.layer import Linear

    return [m for m in model.backbone.modules() if type(m) is Linear]


@pytest.mark.parametrize("family", ["qwen2", "llama", "mistral", "gemma3"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_lean_forward_gives_peft_results_and_gradients_bit_for_bit(tiny_family_dirs, family, dropout):
    from emo_hf.backbones.lean_lora import lean_lora_count, use_lean_lora_forward

    peft_model, lean_model = _pair(tiny_family_dirs[family], {"r": 2, "lora_dropout": dropout})
    names = list(lean_model.state_dict())
    projections = len(_lora_linears(lean_model))
    assert projections >= 14  # two layers x the 7 projections
    assert use_lean_lora_forward(lean_model.backbone) == projections
    assert use_lean_lora_forward(lean_model.backbone) == projections  # idempotent
    assert lean_lora_count(lean_model.backbone) == projections and lean_lora_count(peft_model.backbone) == 0
    assert list(lean_model.state_dict()) == names  # only the forward attribute changed
    batch = peft_model.tokenizer(TEXTS, padding=True, return_tensors="pt")
    labels = torch.tensor([[1.0, 0.0, 1.0]] * len(TEXTS))
    want_logits, want_grads = _step(peft_model, batch, labels)
    got_logits, got_grads = _step(lean_model, batch, labels)
    assert torch.equal(got_logits, want_logits)
    assert set(got_grads) == set(want_grads) and any("lora_A" in n for n in got_grads)
    for name, grad in want_grads.items():
        assert torch.equal(got_grads[name], grad), name
    with torch.no_grad():
        peft_model.eval(), lean_model.eval()
        assert torch.equal(lean_model(**batch).logits, peft_model(**batch).logits)


def test_lean_forward_defers_to_peft_when_adapters_are_disabled_or_merged(tiny_family_dirs):
    from emo_hf.backbones.lean_lora import use_lean_lora_forward

    peft_model, lean_model = _pair(tiny_family_dirs["qwen2"], {"r": 2})
    use_lean_lora_forward(lean_model.backbone)
    x = torch.randn(3, 5, _lora_linears(lean_model)[0].in_features)
    for peft_linear, lean_linear in zip(_lora_linears(peft_model), _lora_linears(lean_model)):
        base_only = peft_linear.base_layer(x)
        with_lora = peft_linear(x)
        assert not torch.equal(base_only, with_lora)  # the LoRA branch adds something
        lean_linear.enable_adapters(False)
        assert torch.equal(lean_linear(x), base_only)
        lean_linear.enable_adapters(True)
        assert torch.equal(lean_linear(x), with_lora)
        lean_linear.merge()  # the base weight now holds the LoRA update: peft's forward runs the base alone
        torch.testing.assert_close(lean_linear(x), with_lora, rtol=1e-5, atol=1e-5)
        lean_linear.unmerge()
        break


def test_lean_forward_leaves_dora_and_hooked_bases_to_peft():
    from peft import LoraConfig, inject_adapter_in_model

    from emo_hf.backbones.lean_lora import use_lean_lora_forward

    def two_linears():
        return torch.nn.ModuleDict({"q_proj": torch.nn.Linear(8, 8), "v_proj": torch.nn.Linear(8, 8)})

    dora = inject_adapter_in_model(LoraConfig(r=2, target_modules=["q_proj", "v_proj"], use_dora=True), two_linears())
    assert use_lean_lora_forward(dora) == 0
    hooked = inject_adapter_in_model(LoraConfig(r=2, target_modules=["q_proj", "v_proj"]), two_linears())
    hooked["q_proj"].base_layer.register_forward_hook(lambda module, inputs, output: output * 2)
    assert use_lean_lora_forward(hooked) == 1  # v_proj only: q_proj's base hook runs only through peft's forward
