#!/usr/bin/env python
"""How long Dynamo alone takes to trace the whole layer loop (`--compile-scope stack`) of a Qwen2.5-0.5B-shaped
decoder, with and without LoRA: the part of a warm run's first step that no inductor cache spares.

    python bench/dynamo_trace_time.py                 # 24 layers, LoRA r=16 on the 7 projections
    python bench/dynamo_trace_time.py --no-lora       # the bare layers
    python bench/dynamo_trace_time.py --layers 4
    python bench/dynamo_trace_time.py --dynamo inline_inbuilt_nn_modules=False   # a Dynamo setting (no gain, 35.2 vs 35.5 s)

Random weights (bf16, vocabulary cut to 1,000: the embedding's size does not change the trace), backend "eager"
(Dynamo's graph capture only, no AOTAutograd, no code generation), one forward + backward of an 8 x 40 batch. Prints
the first and second step's seconds and torch._dynamo.utils.compile_times() (compile_inner = the whole trace). On the
2-core VM (2026-12-03, torch 2.13.0+cpu): 24 layers 20.8-25.3 s with LoRA (three runs), 9.4-11.3 s without (two)
(docs/benchmarks.md, "The shared prefix as one packed call"). With `--backend aot_eager [--nested]` (2026-12-03, same
VM): Dynamo's bytecode tracing 21.0 s unrolled and 21.7 s with the layers as nested compile regions (23 of 24 calls
reused the region): Dynamo still traces every call to check it can reuse the region; only AOTAutograd's part shrank
(74.2 -> 50.6 s), which a warm run's cache spares anyway.
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--no-lora", action="store_true")
    parser.add_argument("--nested", action="store_true",
                        help="mark each layer as a torch.compiler.nested_compile_region (traced once, reused)")
    parser.add_argument("--backend", default="eager", choices=["eager", "aot_eager"],
                        help="eager: Dynamo only; aot_eager: + AOTAutograd (needed with --nested: the nested "
                             "region's backward needs AOTAutograd's fake mode)")
    parser.add_argument("--peft-lora", action="store_true",
                        help="keep peft's own LoRA forward (the library gives the projections the lean forward of "
                             "emo_hf.backbones.lean_lora before compiling)")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"],
                        help="weights' dtype (float32 runs the traced graph faster on a CPU without bf16 units; the "
                             "trace is the same code)")
    parser.add_argument("--dynamo", action="append", default=[], metavar="KEY=VALUE",
                        help="a torch._dynamo.config value to set, e.g. --dynamo inline_inbuilt_nn_modules=False "
                             "(repeatable)")
    args = parser.parse_args()
    import torch._dynamo

    for item in args.dynamo:
        key, _, value = item.partition("=")
        setattr(torch._dynamo.config, key, {"True": True, "False": False}.get(value, value))

    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from emo_hf.backbones.compilation import compile_layers

    config = Qwen2Config(hidden_size=896, intermediate_size=4864, num_hidden_layers=args.layers, num_attention_heads=14,
                         num_key_value_heads=2, vocab_size=1000, max_position_embeddings=512, dtype=args.dtype)
    model = Qwen2ForCausalLM(config).to(getattr(torch, args.dtype)).model
    if args.no_lora:
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        model.norm.weight.requires_grad_(True)  # something to differentiate
    else:
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=[
            "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    if args.nested:
        import types

        from emo_hf.backbones.compilation import repeated_layers

        layers = repeated_layers(model)
        marked = torch.compiler.nested_compile_region(type(layers[0]).forward)
        for layer in layers:
            layer.forward = types.MethodType(marked, layer)
    graphs = []

    def recording_eager(gm, example_inputs):  # keeps Dynamo's graphs to count nested calls
        graphs.append(gm)
        if args.backend == "aot_eager":
            from torch._dynamo.backends.registry import lookup_backend

            return lookup_backend("aot_eager")(gm, example_inputs)
        return gm.forward

    compile_layers(model, scope="stack", backend=recording_eager, lean_lora=not args.peft_lora)
    ids = torch.randint(0, 1000, (8, 40))
    mask = torch.ones(8, 40, dtype=torch.long)
    mask[0, -3:] = 0  # one padded row, as in training
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        model(input_ids=ids, attention_mask=mask).last_hidden_state.float().mean().backward()
        seconds.append(time.perf_counter() - start)
    regions = sum("invoke_subgraph" in str(n.target) for g in graphs for n in g.graph.nodes)
    lora = "no LoRA" if args.no_lora else "LoRA r=16, " + ("peft's forward" if args.peft_lora else "lean forward")
    print(f"{args.layers} layers, {args.dtype}, {lora}{', nested' if args.nested else ''}: "
          f"first step {seconds[0]:.1f} s, second {seconds[1]:.1f} s; {len(graphs)} graph(s), {regions} "
          "invoke_subgraph call(s)")
    print(torch._dynamo.utils.compile_times(repr="str", aggregate=True))


if __name__ == "__main__":
    main()
