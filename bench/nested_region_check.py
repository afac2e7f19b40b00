#!/usr/bin/env python
"""Is `torch.compiler.nested_compile_region` safe for `--compile-scope stack`? Logits and LoRA gradients of a tiny
random Qwen2 classifier whose decoder layers are marked as one nested region (traced once, reused by every layer),
compiled as one stack, against the same model in eager mode, over three batch shapes.

    python bench/nested_region_check.py --layers 8 --backend aot_eager   # Dynamo + AOTAutograd only
    python bench/nested_region_check.py --layers 8 --backend inductor    # with code generation (~1-2 min on 2 cores)

Why: `--compile-scope stack` compiles all layers as one region (the scope where CUDA graphs work), and its cold
compile took 142 s against 20 s per layer on the H200 (docs/benchmarks.md, "The whole layer loop as one compiled
region"); a nested region would trace one layer instead of 24. Prints one line per shape: how many gradient tensors
differ from eager (rtol 1e-3), and the first few, for whole rows and for the shared prefix (the compiled model run
with `shared_prefix_length`, emo_hf.shared_prefix, against eager whole rows). The test suite compiles with aot_eager
only (inductor's code generation takes minutes on 2 cores): `--backend inductor` is the check of the generated code.
The library does not use nested regions (docs/benchmarks.md). Exits 1 when a logit or gradient differs. The last line
says whether Dynamo's graphs hold the nested region (how many invoke_subgraph calls).

    python bench/nested_region_check.py --layers 4 --backend aot_eager --static   # a graph per batch shape
    python bench/nested_region_check.py --layers 8 --inductor allow_buffer_reuse=False   # 0 of 114 differ (torch 2.13)
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import types
from pathlib import Path

import torch
import torch._functorch.config as functorch_config  # (imported in main, `torch` would be local there)

TEXTS = ["i love this", "so sad that day was awful", "what a great day !", "why would you do that ?"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--backend", default="inductor")
    p.add_argument("--no-nested", action="store_true", help="the plain stack scope, for comparison")
    p.add_argument("--no-donated-buffer", action="store_true", help="torch._functorch.config.donated_buffer=False")
    p.add_argument("--static", action="store_true", help="compile with dynamic=False (a graph per batch shape)")
    p.add_argument("--inductor", action="append", default=[], metavar="KEY=VALUE",
                   help="an inductor config to set, e.g. --inductor allow_buffer_reuse=False (repeatable)")
    args = p.parse_args()
    import torch._inductor.config as inductor_config

    for item in args.inductor:
        key, _, value = item.partition("=")
        setattr(inductor_config, key, {"True": True, "False": False}.get(value, value))
    if args.no_donated_buffer:
        functorch_config.donated_buffer = False

    from transformers import AutoModel

    from emo_hf.backbones import load_for_training
    from emo_hf.backbones.compilation import compile_layers, repeated_layers
    from emo_hf.backbones.tiny import make_family_config, make_family_tokenizer

    folder = Path(tempfile.mkdtemp(prefix="nested-region-")) / "qwen2"
    tokenizer = make_family_tokenizer("qwen2")
    config = make_family_config("qwen2", len(tokenizer), tokenizer, hidden_size=64, num_layers=args.layers)
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    models = [load_for_training(str(folder), labels=["a", "b", "c"], lora={"r": 2}, max_length=32) for _ in range(2)]
    eager, compiled = models
    compiled.load_state_dict(eager.state_dict())
    for model in models:
        model.dropout.p = 0.0
    if not args.no_nested:  # one marked function shared by every layer, bound to each
        layers = repeated_layers(compiled.backbone)
        marked = torch.compiler.nested_compile_region(type(layers[0]).forward)
        for layer in layers:
            layer.forward = types.MethodType(marked, layer)
    graphs = []  # what Dynamo hands the backend: does it hold the nested region (an invoke_subgraph node)?

    def recording_backend(gm, example_inputs):
        graphs.append(gm)
        if args.backend == "inductor":
            from torch._inductor.compile_fx import compile_fx

            return compile_fx(gm, example_inputs)
        from torch._dynamo.backends.registry import lookup_backend

        return lookup_backend(args.backend)(gm, example_inputs)

    compile_layers(compiled.backbone, scope="stack", backend=recording_backend, dynamic=not args.static)

    def logits_and_gradients(model, batch, labels, **extra):
        model.zero_grad()
        out = model(**batch, labels=labels, **extra)
        out.loss.backward()
        return out.logits.detach(), {n: q.grad.clone() for n, q in model.named_parameters() if q.grad is not None}

    started, failed = time.perf_counter(), False
    prefix = 5  # tokens every row begins with, as the instruction prompt's template
    for rows, pad_to in [(4, 8), (3, 16), (2, 24)]:
        batch = eager.tokenizer(TEXTS[:rows], padding="max_length", max_length=pad_to, return_tensors="pt")
        labels = torch.tensor([[1.0, 0.0, 1.0]] * rows)
        shared = {"input_ids": torch.cat([batch["input_ids"][:1, :prefix].expand(rows, -1), batch["input_ids"]], 1),
                  "attention_mask": torch.cat([torch.ones(rows, prefix, dtype=torch.long), batch["attention_mask"]], 1)}
        for path, inputs, extra in (("whole rows", batch, {}), ("shared prefix", shared, {"shared_prefix_length": prefix})):
            want_logits, want = logits_and_gradients(eager, inputs, labels)
            got_logits, got = logits_and_gradients(compiled, inputs, labels, **extra)
            bad = [n for n, g in want.items() if not torch.allclose(got[n], g, rtol=1e-3, atol=1e-5)]
            logits_match = torch.allclose(got_logits, want_logits, rtol=1e-4, atol=1e-5)
            failed |= bool(bad) or not logits_match
            print(f"{'nested' if not args.no_nested else 'stack'} {args.backend} L{args.layers} {path}, rows {rows} x "
                  f"{pad_to}: logits {'match' if logits_match else 'DIFFER'}, {len(bad)} of {len(want)} gradients "
                  f"differ {bad[:3]}", flush=True)
    regions = sum("invoke_subgraph" in str(n.target) for g in graphs for n in g.graph.nodes)
    print(f"{time.perf_counter() - started:.1f} s for the three shapes (compiling included); Dynamo graphs: "
          f"{len(graphs)}, invoke_subgraph calls in them: {regions}"
          + (" (the layers were inlined: no nested region)" if not args.no_nested and not regions else ""))
    shutil.rmtree(folder.parent)  # the random model this script wrote
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
