#!/usr/bin/env python
"""GPU check of EmoModelForMultiLabel on a Mistral with the layer shape of Mistral Small 3.1 24B's text model.

No weights can be downloaded on the lent GPU, so this builds a Mistral with random weights (hidden 5120,
intermediate 32768, 32 heads, 8 KV heads, head_dim 128, vocab 131072, rope theta 1e9; `--layers` decoder layers)
and a locally made tokenizer, saves them to a scratch folder outside the repository, then for both input modes
("text" and "embedding"):
  1. loads it 4-bit through Unsloth with emo_hf.backbones.load_for_training (`--no-unsloth`: bitsandbytes + peft),
  2. trains a few steps on one fixed batch (the loss must fall; gradients only on LoRA, head, projection),
  3. (text mode) runs 2 steps of transformers' Trainer on the model,
  4. saves it, reloads it in 4-bit in this process and in a fresh process (plain transformers + bitsandbytes,
     no Unsloth), and compares the logits,
and prints a PASS/FAIL summary with timings and peak GPU memory. Exit status 0 only if everything passed.

On the GPU (see ../shared/gpu/README.md for the environment):
    python scripts/gpu_check.py --layers 2 --json $OUT/gpu_check.json
    python scripts/gpu_check.py --layers 2 --no-unsloth
Smoke test of the logic on CPU (tiny shapes, full precision, peft LoRA):
    python scripts/gpu_check.py --cpu --layers 1 --hidden 64
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LABELS = ["fear", "sadness", "anger", "joy", "love"]
WORDS = ["<pad>", "<s>", "</s>", "<unk>"] + (
    "i you we they love hate fear miss want need this that it day night so very not really sad happy angry "
    "scared glad upset what why how a the is was are be thanks sorry great awful terrible wonderful . ! ?"
).split()


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=2, help="decoder layers (default 2; the real model has 40)")
    parser.add_argument("--hidden", type=int, default=None, help="hidden size (default 5120; --cpu: 64)")
    parser.add_argument("--intermediate", type=int, default=None, help="MLP size (default 32768; --cpu: 2*hidden)")
    parser.add_argument("--heads", type=int, default=None, help="attention heads (default 32; --cpu: 4)")
    parser.add_argument("--kv-heads", type=int, default=None, help="KV heads (default 8; --cpu: 2)")
    parser.add_argument("--head-dim", type=int, default=None, help="head dim (default 128; --cpu: hidden/heads)")
    parser.add_argument("--vocab", type=int, default=None, help="vocabulary size (default 131072; --cpu: 512)")
    parser.add_argument("--rope-theta", type=float, default=1e9)
    parser.add_argument("--steps", type=int, default=4, help="training steps per mode (default 4)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=64, help="max tokens per text (a longer one is included)")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--no-unsloth", action="store_true", help="use transformers + bitsandbytes NF4 + peft")
    parser.add_argument("--cpu", action="store_true", help="tiny CPU smoke test of this script's logic")
    parser.add_argument("--skip-trainer", action="store_true", help="skip the transformers Trainer check")
    parser.add_argument("--modes", default="text,embedding")
    parser.add_argument("--scratch", default=None, help="scratch folder outside the repository "
                        "(default: $HOME/emo_gpu_check, or a temp folder with --cpu)")
    parser.add_argument("--json", default=None, help="also write the results as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    # internal: reload a saved model in a fresh process and write its logits
    parser.add_argument("--reload", nargs=3, metavar=("MODEL_DIR", "INPUTS_PT", "OUT_PT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cpu:
        args.hidden = args.hidden or 64
        args.heads = args.heads or 4
        args.kv_heads = args.kv_heads or 2
        args.intermediate = args.intermediate or 2 * args.hidden
        args.head_dim = args.head_dim or args.hidden // args.heads
        args.vocab = args.vocab or 512
    else:
        args.hidden = args.hidden or 5120
        args.heads = args.heads or 32
        args.kv_heads = args.kv_heads or 8
        args.intermediate = args.intermediate or 32768
        args.head_dim = args.head_dim or 128
        args.vocab = args.vocab or 131072
    return args


class Report:
    def __init__(self) -> None:
        self.checks: list[tuple[str, bool, str]] = []
        self.timings: dict[str, float] = {}
        self.facts: dict[str, object] = {}

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append((name, bool(ok), detail))
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}{': ' + detail if detail else ''}", flush=True)
        return bool(ok)

    def time(self, name: str, seconds: float) -> None:
        self.timings[name] = round(seconds, 2)
        print(f"  [time] {name}: {seconds:.2f} s", flush=True)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(ok for _, ok, _ in self.checks)


def make_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


def build_base(args, folder: Path, device: str, report: Report) -> None:
    """A random Mistral (CausalLM checkpoint, as Unsloth expects) + tokenizer saved to `folder`."""
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    dtype = torch.float32 if args.cpu else torch.bfloat16
    config = MistralConfig(
        hidden_size=args.hidden, intermediate_size=args.intermediate, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, num_key_value_heads=args.kv_heads, head_dim=args.head_dim,
        vocab_size=args.vocab, max_position_embeddings=4096, rms_norm_eps=1e-5, sliding_window=None,
        rope_parameters={"rope_type": "default", "rope_theta": args.rope_theta}, tie_word_embeddings=False,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, dtype="float32" if args.cpu else "bfloat16")
    started = time.perf_counter()
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = MistralForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    report.time("build random base model", time.perf_counter() - started)
    started = time.perf_counter()
    model.save_pretrained(folder)
    make_tokenizer().save_pretrained(folder)
    report.time("save base model", time.perf_counter() - started)
    n_params = sum(p.numel() for p in model.parameters())
    report.facts["base_parameters"] = n_params
    report.facts["base_size_gb"] = round(sum(f.stat().st_size for f in folder.iterdir()) / 1e9, 2)
    print(f"  base model: {n_params:,} parameters, {report.facts['base_size_gb']} GB on disk at {folder}")
    del model
    if device == "cuda":
        torch.cuda.empty_cache()


def make_batch(model, mode: str, batch: int, max_length: int, device: str):
    import torch

    generator = torch.Generator().manual_seed(1)
    vocabulary = WORDS[4:]
    texts = []
    for i in range(batch):
        n = 3 + (i * 7) % 17
        texts.append(" ".join(vocabulary[int(j)] for j in torch.randint(len(vocabulary), (n,), generator=generator)))
    texts[-1] = " ".join(["so very sad"] * max_length)  # longer than max_length: must be truncated, not crash
    labels = (torch.rand(batch, len(LABELS), generator=generator) < 0.3).float()
    labels[:, 0] = torch.arange(batch) % 2  # every label column has both classes for some rows
    if mode == "text":
        inputs = {k: v.to(device) for k, v in model.tokenize(texts).items()}
    else:
        vectors = torch.nn.functional.normalize(torch.randn(batch, model.config.encoder_dim, generator=generator), dim=-1)
        inputs = {"sentence_embeddings": vectors.to(device)}
    return texts, inputs, labels.to(device)


def run_mode(args, mode: str, base: Path, scratch: Path, device: str, report: Report) -> None:
    import torch

    from emo_hf.backbones import count_parameters, load_for_training
    from emo_hf.modeling import EmoModelForMultiLabel

    print(f"\n== {mode} mode ==", flush=True)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    model = load_for_training(str(base), labels=LABELS, input_mode=mode, device=device, max_length=args.max_length,
                              load_in_4bit=not args.cpu, use_unsloth=not (args.cpu or args.no_unsloth),
                              encoder_dim=384, num_soft_tokens=4)
    report.time(f"{mode}: load_for_training", time.perf_counter() - started)
    trainable, total = count_parameters(model)
    report.facts[f"{mode}_trainable_parameters"] = trainable
    report.facts[f"{mode}_total_parameters"] = total
    quantized = any(type(p).__name__ == "Params4bit" for p in model.backbone.parameters())
    if not args.cpu:
        report.check(f"{mode}: backbone is 4-bit", quantized)
    head_dtypes = {p.dtype for n, p in model.named_parameters() if n.startswith(("score.", "projection."))}
    report.check(f"{mode}: head/projection float32 and trainable",
                 head_dtypes == {torch.float32} and model.score.weight.requires_grad, str(head_dtypes))
    bad = [n for n, p in model.named_parameters()
           if p.requires_grad and "lora_" not in n and not n.startswith(("score.", "projection."))]
    report.check(f"{mode}: only LoRA, head, projection trainable", not bad, ", ".join(bad[:3]))

    texts, inputs, labels = make_batch(model, mode, args.batch, args.max_length, device)
    if mode == "text":
        report.check(f"{mode}: over-long text truncated to max_length", inputs["input_ids"].shape[1] <= args.max_length,
                     f"batch {tuple(inputs['input_ids'].shape)}")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    model.train()
    losses, step_times = [], []
    for step in range(args.steps):
        started = time.perf_counter()
        out = model(**inputs, labels=labels)
        out.loss.backward()
        if step == 0:
            with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
            report.check(f"{mode}: gradients reach LoRA and the head",
                         any("lora_B" in n for n in with_grad) and "score.weight" in with_grad
                         and (mode == "text" or any(n.startswith("projection.") for n in with_grad)),
                         f"{len(with_grad)} tensors with gradient")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        step_times.append(time.perf_counter() - started)
        losses.append(float(out.loss))
        print(f"  step {step}: loss {losses[-1]:.5f} ({step_times[-1]:.2f} s)", flush=True)
    report.time(f"{mode}: first training step", step_times[0])
    if len(step_times) > 1:
        report.time(f"{mode}: mean later step", sum(step_times[1:]) / len(step_times[1:]))
    report.facts[f"{mode}_losses"] = losses
    report.check(f"{mode}: losses finite and falling", all(map(lambda x: x == x and abs(x) != float("inf"), losses))
                 and losses[-1] < losses[0], f"{losses[0]:.5f} -> {losses[-1]:.5f}")

    if mode == "text" and not args.skip_trainer:
        trainer_check(model, texts, labels, scratch, args, report)

    model.eval()
    with torch.no_grad():
        before = model(**inputs).logits.float().cpu()
    saved = scratch / f"saved-{mode}"
    started = time.perf_counter()
    model.save_pretrained(saved)
    report.time(f"{mode}: save_pretrained", time.perf_counter() - started)
    files = {p.name: p.stat().st_size for p in sorted(saved.iterdir())}
    print("  saved files: " + ", ".join(f"{name} ({size / 1e6:.2f} MB)" for name, size in files.items()))
    report.check(f"{mode}: saved adapter + head, not the base", {"adapter", "head.safetensors", "config.json",
                 "modeling.py", "configuration.py"} <= set(files) and "backbone.safetensors" not in files
                 and (saved / "adapter" / "adapter_model.safetensors").is_file())
    if device == "cuda":
        report.facts[f"{mode}_peak_gpu_gib_training"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    del model, optimizer, out
    if device == "cuda":
        torch.cuda.empty_cache()

    cpu_inputs = {k: v.cpu() for k, v in inputs.items()}
    torch.save({"inputs": cpu_inputs, "logits": before}, scratch / f"{mode}-inputs.pt")
    # Reload in this process (with Unsloth imported, transformers' Mistral classes are patched) ...
    try:
        started = time.perf_counter()
        reloaded = EmoModelForMultiLabel.from_pretrained(saved)
        report.time(f"{mode}: from_pretrained (same process)", time.perf_counter() - started)
        if not args.cpu:
            report.check(f"{mode}: reloaded backbone is 4-bit",
                         any(type(p).__name__ == "Params4bit" for p in reloaded.backbone.parameters()))
        with torch.no_grad():
            again = reloaded(**{k: v.to(device) for k, v in cpu_inputs.items()}).logits.float().cpu()
        compare_logits(f"{mode}: reloaded logits (same process)", before, again, args, report)
        del reloaded
    except Exception as error:
        import traceback

        traceback.print_exc()
        report.check(f"{mode}: reload in the same process", False, f"{type(error).__name__}: {str(error)[:800]}")
    if device == "cuda":
        torch.cuda.empty_cache()
    # ... and in a fresh process without Unsloth, as a user would.
    out_file = scratch / f"{mode}-fresh.pt"
    started = time.perf_counter()
    result = subprocess.run([sys.executable, __file__, "--reload", str(saved), str(scratch / f"{mode}-inputs.pt"),
                             str(out_file)], capture_output=True, text=True)
    report.time(f"{mode}: fresh-process reload + forward", time.perf_counter() - started)
    if result.returncode != 0:
        report.check(f"{mode}: reload in a fresh process", False, result.stderr[-1500:])
    else:
        fresh = torch.load(out_file)
        print("  " + fresh["info"])
        if not args.cpu:
            report.check(f"{mode}: fresh-process backbone is 4-bit", fresh["quantized"])
        compare_logits(f"{mode}: reloaded logits (fresh process, no Unsloth)", before, fresh["logits"], args, report)


def compare_logits(name: str, before, after, args, report: Report) -> None:
    import torch

    diff = (before - after).abs().max().item()
    scale = before.abs().max().item()
    # bf16 4-bit kernels differ between Unsloth and bitsandbytes: allow 5% of the logit scale (CPU: exact-ish).
    tolerance = 1e-5 if args.cpu else max(0.05, 0.05 * scale)
    same_decisions = bool(((torch.sigmoid(before) >= 0.5) == (torch.sigmoid(after) >= 0.5)).float().mean() >= 0.95)
    report.facts[name] = {"max_abs_diff": diff, "max_abs_logit": scale}
    report.check(name, diff <= tolerance and same_decisions,
                 f"max |diff| {diff:.3g} (tolerance {tolerance:.3g}, max |logit| {scale:.3g})")


def trainer_check(model, texts, labels, scratch: Path, args, report: Report) -> None:
    """Two steps of transformers' Trainer on the model (device placement, 4-bit, bf16): it must run."""
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    def collate(features):
        batch = model.tokenizer.pad([{"input_ids": f["input_ids"], "attention_mask": f["attention_mask"]}
                                     for f in features], return_tensors="pt")
        batch["labels"] = torch.tensor(np.asarray([f["labels"] for f in features], dtype=np.float32))
        return dict(batch)

    encoded = model.tokenizer(texts, truncation=True, max_length=args.max_length)
    data = Dataset.from_dict({"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"],
                              "labels": labels.cpu().tolist()})
    training_args = TrainingArguments(output_dir=str(scratch / "trainer"), max_steps=2, per_device_train_batch_size=4,
                                      learning_rate=1e-4, logging_steps=1, save_strategy="no", report_to=[],
                                      remove_unused_columns=False, bf16=not args.cpu, use_cpu=args.cpu,
                                      disable_tqdm=True)
    started = time.perf_counter()
    try:
        result = Trainer(model=model, args=training_args, train_dataset=data, data_collator=collate).train()
        ok, detail = result.training_loss == result.training_loss, f"training_loss {result.training_loss:.5f}"
    except Exception as error:  # report, then go on with the other checks
        ok, detail = False, f"{type(error).__name__}: {str(error)[:500]}"
    report.time("text: Trainer 2 steps", time.perf_counter() - started)
    report.check("text: transformers Trainer runs on the model", ok, detail)


def reload_main(model_dir: str, inputs_file: str, out_file: str) -> int:
    """Fresh process: plain transformers (+ bitsandbytes), emo_hf's Auto registration, no Unsloth."""
    _importable_emo_hf()
    import torch
    from transformers import AutoModel

    import emo_hf  # noqa: F401

    started = time.perf_counter()
    model = AutoModel.from_pretrained(model_dir)
    seconds = time.perf_counter() - started
    device = model.get_input_embeddings().weight.device
    inputs = torch.load(inputs_file)["inputs"]
    with torch.no_grad():
        logits = model(**{k: v.to(device) for k, v in inputs.items()}).logits.float().cpu()
    quantized = any(type(p).__name__ == "Params4bit" for p in model.backbone.parameters())
    info = (f"fresh process: {type(model).__name__} loaded in {seconds:.1f} s on {device}, 4-bit={quantized}, "
            f"unsloth imported={'unsloth' in sys.modules}")
    torch.save({"logits": logits, "quantized": quantized, "info": info}, out_file)
    return 0


def _importable_emo_hf() -> None:
    # This checkout's emo_hf, also where an older copy is installed (`pip install .` is not editable), as the bench
    # scripts do: a check of the code beside the script, never of a stale install.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    args = parse_args(argv)
    _importable_emo_hf()
    if args.reload:
        return reload_main(*args.reload)
    if not (args.cpu or args.no_unsloth):
        import unsloth  # noqa: F401  (before transformers/peft, as Unsloth requires)
    import torch

    device = "cpu" if args.cpu else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("No CUDA GPU visible: run with --cpu for the smoke test.", file=sys.stderr)
        return 2
    repo = Path(__file__).resolve().parents[1]
    scratch = Path(args.scratch) if args.scratch else (
        Path(tempfile.mkdtemp(prefix="emo_gpu_check-")) if args.cpu else Path.home() / "emo_gpu_check")
    if repo in scratch.resolve().parents or scratch.resolve() == repo:
        print(f"--scratch {scratch} is inside the repository: pick a folder outside it.", file=sys.stderr)
        return 2
    scratch.mkdir(parents=True, exist_ok=True)
    report = Report()
    path = "CPU (full precision + peft LoRA)" if args.cpu else (
        "transformers + bitsandbytes NF4 + peft" if args.no_unsloth else "Unsloth 4-bit")
    report.facts.update(path=path, layers=args.layers, hidden=args.hidden, intermediate=args.intermediate,
                        heads=args.heads, kv_heads=args.kv_heads, head_dim=args.head_dim, vocab=args.vocab,
                        batch=args.batch, max_length=args.max_length, steps=args.steps,
                        date=time.strftime("%Y-%m-%d %H:%M:%S %Z"), torch=torch.__version__,
                        device=torch.cuda.get_device_name(0) if device == "cuda" else "cpu")
    for package in ("transformers", "peft", "bitsandbytes", "unsloth"):
        module = sys.modules.get(package)
        if module is None and package != "unsloth":
            try:
                module = __import__(package)
            except ImportError:
                module = None
        report.facts[f"{package}_version"] = getattr(module, "__version__", None)
    print(f"emo_hf gpu_check: {path}, {args.layers} layer(s) of hidden {args.hidden}, device {report.facts['device']}")
    started_all = time.perf_counter()
    try:
        base = scratch / "base"
        print("\n== base model ==", flush=True)
        build_base(args, base, device, report)
        for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
            try:
                run_mode(args, mode, base, scratch, device, report)
            except Exception as error:  # one mode failing should not hide the other's results
                import traceback

                traceback.print_exc()
                report.check(f"{mode}: completed", False, f"{type(error).__name__}: {str(error)[:800]}")
    finally:
        report.time("total", time.perf_counter() - started_all)
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    print("\n== summary ==")
    for name, ok, detail in report.checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name}{'  (' + detail + ')' if detail and not ok else ''}")
    print("timings (s): " + json.dumps(report.timings))
    print("facts: " + json.dumps({k: v for k, v in report.facts.items() if not isinstance(v, dict)}))
    print(f"\nOVERALL: {'PASS' if report.passed else 'FAIL'} "
          f"({sum(ok for _, ok, _ in report.checks)}/{len(report.checks)} checks)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"passed": report.passed, "checks": report.checks,
                                               "timings": report.timings, "facts": report.facts}, indent=2))
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
