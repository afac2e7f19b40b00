"""The stack scope's compiled training graph saved to disk and loaded by the next run (torch.compile's ahead-of-time
`aot_compile`, torch >= 2.10), so a run with the same backbone, LoRA, settings and library versions skips Dynamo's
trace of the whole layer loop: on the H200 16-23 s of every warm run's first step, the largest piece of start-up no
inductor cache spares (docs/benchmarks.md, "Fixed batch shapes"). On the H200 a 4-layer decoder of the
Qwen2.5-0.5B shape started in 1.72 s loaded against 5.81 s traced on a warm cache, same outputs and gradients, CUDA
graphs included (`python bench/precompiled_stack.py --device cuda --mode reduce-overhead`; docs/benchmarks.md, "The
saved compiled graph").

    >>> compile_layers(backbone, scope="stack", mode="reduce-overhead", precompile_dir="~/.cache/x")  # the library's way in
    >>> forward = PrecompiledForward(owner, fallback=torch.compile(owner.forward), cache_dir=..., mode=None)

The first training call of a process looks for `<cache_dir>/<key>/`; if it is there, the compiled function is loaded
from it; if not, it is compiled ahead of time on that call's inputs (Dynamo's trace + inductor, what `torch.compile`
does on a first call) and saved there (written in a temporary folder, then renamed into place), for the next run.

Why a key of our own: `aot_compile` can serialise only some of Dynamo's guards. The ones kept are the non-parameter
tensors' guards (dtype, device, rank, requires_grad), the symbolic shape guards (a one-row batch, specialised by
Dynamo, is refused) and torch's global state guard (grad mode, autocast, deterministic algorithms). What the
dropped ones checked (the modules' code and attributes, the config values the trace read, which arguments were None)
goes into the folder's key instead: library versions, the device, the module tree, the backbone's config, every
module's plain attributes (LoRA's scaling, norms' eps: constants in the graph), every parameter's name/shape/dtype, the source of every module class in the stack and of the functions wrapping its
forward, the compile settings, the Dynamo settings, and the call's signature. A call that does not match the
loaded function (another set of arguments, train/eval mode changed, a guard fails) runs through `fallback`, the usual
`torch.compile` path, and is counted in `info["fallback_calls"]`.

Where it does not work (a graph break: `aot_compile` needs one full graph; a backend whose output cannot be
serialised; a pickling error), it says why once in the log and in `info`, and every call runs through `fallback`.
The saved function is a pickle written by torch: loading it runs code, so point `cache_dir` only at a folder you trust
(the default is inductor's own cache folder, whose files are loaded the same way).
"""

from __future__ import annotations

import builtins
import hashlib
import inspect
import io
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

FORMAT = 1
# Guards aot_compile can serialise and that we keep; the rest is covered by the folder's key (module docstring).
# Only torch's "portable" kinds (torch.compiler.keep_portable_guards_unsafe), less the parameters' guards: with any other
# kind kept, torch also saves key-order guards on the modules' dicts, which it cannot evaluate when it loads the file.
_KEPT_GUARDS = ("SHAPE_ENV", "GLOBAL_STATE")


def default_cache_dir() -> Path:
    """`emo_hf_precompiled/` inside inductor's cache folder ($TORCHINDUCTOR_CACHE_DIR, else /tmp/torchinductor_<user>),
    so carrying or clearing inductor's cache carries or clears these files with it. They need each other: the saved
    file holds the graph and generated code, inductor's cache the compiled kernels (on the CPU, a 2-layer stack loaded
    with an empty inductor cache took 13.6 s instead of 1.9 s, compiling its C++ kernels again; docs/benchmarks.md)."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    return Path(cache_dir()) / "emo_hf_precompiled"


def precompile_available() -> str | None:
    """None if this torch can compile ahead of time and load the result, else why not."""
    if not hasattr(torch.compiler, "load_compiled_function"):
        return f"torch {torch.__version__} has no torch.compiler.load_compiled_function (aot_compile needs torch >= 2.10)"
    return None


def _kept_guards(entries) -> list[bool]:
    """guard_filter_fn for aot_compile: the guards listed in the module docstring."""
    return [(entry.guard_type == "TENSOR_MATCH" and not entry.is_global and not isinstance(entry.value, nn.Parameter))
            or entry.guard_type in _KEPT_GUARDS for entry in entries]


def _describe(value: Any) -> Any:
    """What a guard would have checked about one argument, or raise TypeError where we cannot tell."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return [type(value).__name__, value]
    if isinstance(value, torch.Tensor):
        return ["Tensor", str(value.dtype), value.dim(), value.device.type, value.requires_grad]
    raise TypeError(f"argument of type {type(value).__name__}")


def call_signature(owner: nn.Module, args: tuple, kwargs: dict, modules: list[nn.Module] | None = None) -> str | None:
    """The call's arguments as far as the compiled graph depends on them (None: an argument we cannot describe), and
    the train/eval mode of every module in the stack (dropout), as one string. `modules`: `list(owner.modules())`,
    listed once by the caller (walking the 0.5B's ~2,000 modules took ~1 ms a call on the 2-core CPU)."""
    try:
        described = {"args": [_describe(a) for a in args],
                     "kwargs": {name: _describe(value) for name, value in sorted(kwargs.items())}}
    except TypeError:
        return None
    described["training"] = "".join("1" if m.training else "0" for m in (modules or owner.modules()))
    described["autocast"] = [torch.is_autocast_enabled(device) for device in ("cpu", "cuda")]
    # --shared-prefix sets the config's attention function for its packed call only: a graph traced with one
    # attention must not run a call made with another.
    described["attention"] = getattr(getattr(owner, "config", None), "_attn_implementation", None)
    return json.dumps(described, sort_keys=True)


def _forward_chain(owner: nn.Module) -> list[Callable]:
    """The class's forward and the functions it wraps (transformers' decorators): pickled by reference, not value."""
    chain, function = [], type(owner).forward
    while function is not None and len(chain) < 16:
        chain.append(function)
        function = getattr(function, "__wrapped__", None)
    return chain


def _source(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return f"<no source: {getattr(obj, '__qualname__', obj)!r}>"


def _plain(value: Any, depth: int = 0) -> bool:
    """A value made of None/bool/int/float/str and lists, tuples, sets and dicts of them (what a trace may bake in)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if depth < 3 and isinstance(value, (list, tuple, set, frozenset)):
        return all(_plain(v, depth + 1) for v in value)
    if depth < 3 and isinstance(value, dict):
        return all(_plain(k, depth + 1) and _plain(v, depth + 1) for k, v in value.items())
    return False


def _canonical(value: Any) -> Any:
    """A plain value in a form that prints the same in every process: sets sorted (their order follows string hashing,
    salted per process: two runs of SmolLM2 got two keys from `{'inv_freq', 'original_inv_freq'}`), dict keys sorted."""
    if isinstance(value, (set, frozenset)):
        return sorted((_canonical(v) for v in value), key=repr)
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return sorted(([repr(_canonical(k)), _canonical(v)] for k, v in value.items()), key=lambda item: item[0])
    return value


def module_attributes(owner: nn.Module) -> list:
    """Every module's plain attributes (eps, scaling, LoRA's alpha/r per adapter, head counts, sliding windows, dropout
    p...): the trace reads them as constants (`specialize_float`), so a change in any must change the key."""
    return [(name, sorted((key, repr(_canonical(value))) for key, value in vars(module).items()
                          if key != "training" and _plain(value)))
            for name, module in owner.named_modules()]


def cache_key(owner: nn.Module, signature: str, settings: dict) -> str:
    """sha256 of everything the dropped guards would have checked (`key_parts`), 24 hex digits."""
    blob = json.dumps(key_parts(owner, signature, settings), sort_keys=True, default=repr).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def key_parts(owner: nn.Module, signature: str, settings: dict) -> dict:
    """Everything the dropped guards would have checked (module docstring), as JSON-able values that are the same in
    every process for the same model (no ids or addresses)."""
    import peft
    import transformers

    from .. import __version__ as emo_hf_version
    from .. import shared_prefix
    from . import lean_lora

    config = getattr(owner, "config", None)
    classes = sorted({type(m) for m in owner.modules()}, key=lambda c: f"{c.__module__}.{c.__qualname__}")
    device = next(owner.parameters()).device
    return {
        "format": FORMAT, "python": sys.version, "torch": torch.__version__, "transformers": transformers.__version__,
        "peft": peft.__version__, "emo_hf": emo_hf_version,
        "device": torch.cuda.get_device_name(device) + str(torch.cuda.get_device_capability(device))
        if device.type == "cuda" else device.type,
        "modules": repr(owner),
        "config": config.to_json_string(use_diff=False) if hasattr(config, "to_json_string") else repr(config),
        "attention": getattr(config, "_attn_implementation", None),
        "parameters": [(n, list(p.shape), str(p.dtype), p.requires_grad) for n, p in owner.named_parameters()],
        "buffers": [(n, list(b.shape), str(b.dtype)) for n, b in owner.named_buffers()],
        "attributes": module_attributes(owner),
        # emo_hf's own code on the traced path (its version is not bumped for every change): the lean LoRA forward and
        # the packed shared-prefix attention.
        "sources": [_source(c) for c in classes] + [_source(f) for f in _forward_chain(owner)]
        + [_source(lean_lora), _source(shared_prefix)],
        "instance_forwards": sorted(f"{name}:{type(m).__name__}" for name, m in owner.named_modules()
                                    if "forward" in vars(m)),
        "dynamo": {key: getattr(torch._dynamo.config, key) for key in ("specialize_float", "assume_static_by_default")},
        "matmul_precision": torch.get_float32_matmul_precision(),
        "settings": settings, "call": signature,
    }


def _stack_forward_code(owner, *args, **kwargs):
    return type(owner).forward(owner, *args, **kwargs)


# What aot_compile traces: the owner's forward called through a function whose globals hold the builtins. Why:
# torch 2.11 checks every global name of the generated code (e.g. `type`) against the traced function's module globals,
# where builtins are not ("Missing required external references: ['type']" on the H200, 2026-12-04, when the
# class's forward was traced directly); 2.13 records them itself. The same dict is passed when loading.
_STACK_GLOBALS: dict[str, Any] = {**vars(builtins), "__builtins__": builtins, "__name__": __name__}
_stack_forward = types.FunctionType(_stack_forward_code.__code__, _STACK_GLOBALS, "_stack_forward")


class PrecompiledForward:
    """Runs `type(owner).forward` through a compiled function saved in `cache_dir` (module docstring); `fallback`
    (the usual torch.compile'd forward) for calls it does not cover. `info` is recorded in training_info.json."""

    def __init__(self, owner: nn.Module, fallback: Callable, cache_dir: str | Path, *, mode: str | None,
                 dynamic: bool = True, backend: str | Callable = "inductor"):
        self.owner, self.fallback, self.cache_dir = owner, fallback, Path(cache_dir).expanduser()
        self.mode, self.dynamic, self.backend = mode, dynamic, backend
        self.function = None
        self.signature: str | None = None
        self.modules = list(owner.modules())
        self.info: dict[str, Any] = {"state": "pending", "dir": None, "seconds": None, "fallback_calls": 0}

    def __call__(self, *args, **kwargs):
        if self.info["state"] == "off":
            return self.fallback(*args, **kwargs)
        signature = call_signature(self.owner, args, kwargs, self.modules)
        if self.function is None:
            if signature is None:
                self._off("the first call has an argument whose value a saved graph cannot be checked against")
                return self.fallback(*args, **kwargs)
            self.function = self._load_or_compile(signature, args, kwargs)
            if self.function is None:
                return self.fallback(*args, **kwargs)
            self.function.disable_guard_check()  # checked below, once, before each call
        if signature != self.signature or not self.function.guard_check(self.owner, *args, **kwargs):
            self.info["fallback_calls"] += 1
            return self.fallback(*args, **kwargs)
        return self.function(self.owner, *args, **kwargs)

    def _off(self, reason: str) -> None:
        self.info.update(state="off", reason=reason)
        logger.warning("precompiled stack not used (%s); compiling as usual (torch.compile on the first call)",
                       reason)

    def _settings(self) -> dict:
        backend = self.backend if isinstance(self.backend, str) else getattr(self.backend, "__name__", repr(self.backend))
        return {"mode": self.mode, "dynamic": self.dynamic, "backend": backend}

    def _compile_options(self) -> dict:
        import torch._inductor

        options = dict(torch._inductor.list_mode_options(self.mode, self.dynamic)) if self.mode else {}
        return {**options, "guard_filter_fn": _kept_guards}

    def _load_or_compile(self, signature: str, args: tuple, kwargs: dict):
        reason = precompile_available()
        if reason:
            self._off(reason)
            return None
        self.signature = signature
        folder = self.cache_dir / cache_key(self.owner, signature, self._settings())
        self.info["dir"] = str(folder)
        external = {f"forward_{i}": f for i, f in enumerate(_forward_chain(self.owner))}
        start = time.perf_counter()
        if (folder / "meta.json").is_file():
            try:
                function = self._load(folder, external)
                self.info.update(state="loaded", seconds=round(time.perf_counter() - start, 2))
                logger.info("loaded the precompiled stack from %s in %.1f s", folder, self.info["seconds"])
                return function
            except Exception as error:  # a file of another torch build, a truncated copy: compile anew, say so
                logger.debug("load failed", exc_info=True)
                logger.warning("could not load the precompiled stack from %s (%s: %s); compiling it anew", folder,
                               type(error).__name__, str(error)[:300])
                self.info["load_error"] = f"{type(error).__name__}: {str(error)[:300]}"
        try:
            # torch 2.11 attaches `.aot_compile` only while this switch is on (2.13 by default).
            with torch._dynamo.config.patch(enable_aot_compile=True):
                compiled = torch.compile(_stack_forward, fullgraph=True, dynamic=self.dynamic,
                                         backend=self.backend, options=self._compile_options())
            function = compiled.aot_compile(((self.owner, *args), kwargs))
        except Exception as error:  # a graph break, a backend that cannot serialise
            self._off(f"aot_compile failed: {type(error).__name__}: {str(error)[:300]}")
            return None
        self.info.update(state="compiled", seconds=round(time.perf_counter() - start, 2))
        try:
            self._save(function, folder, external, replace="load_error" in self.info)
            self.info["saved"] = True
        except Exception as error:  # this run still uses it; the next one compiles again
            self.info["saved"] = False
            self.info["save_error"] = f"{type(error).__name__}: {str(error)[:300]}"
            logger.warning("the precompiled stack is used but could not be saved (%s)", self.info["save_error"])
        return function

    def _save(self, function, folder: Path, external: dict, replace: bool) -> None:
        env = function._artifacts.runtime_env
        # Modules the generated bytecode names under a process-specific alias (e.g. collections): by name.
        modules = {ref: function.fn.__globals__[ref].__name__ for ref in env.external_refs
                   if ref not in env.import_sources and isinstance(function.fn.__globals__.get(ref), types.ModuleType)}
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        staging.chmod(0o755)  # mkdtemp's 0700 would follow the folder into place
        try:
            function.save_compiled_function(str(staging / "function.bin"), external_data=external)
            (staging / "meta.json").write_text(json.dumps({"format": FORMAT, "modules": modules,
                                                           "torch": torch.__version__, "signature": self.signature,
                                                           "settings": self._settings()}, indent=1))
            if folder.exists():
                if not replace:  # another process (a second rank, a parallel run) saved the same graph meanwhile
                    return
                shutil.rmtree(folder)  # one of our own folders (named by its key) that failed to load
            os.replace(staging, folder)
        finally:
            if staging.exists():
                shutil.rmtree(staging)

    def _load(self, folder: Path, external: dict):
        import importlib

        import torch._inductor.config

        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT}")
        modules = {**_STACK_GLOBALS,
                   **{ref: importlib.import_module(name) for ref, name in meta["modules"].items()}}
        cudagraphs = bool(self._compile_options().get("triton.cudagraphs", False))
        # Inductor reads its CUDA-graph switch when the loaded graph is set up, not from the file.
        with torch._inductor.config.patch({"triton.cudagraphs": cudagraphs}):
            data = (folder / "function.bin").read_bytes()
            function = torch.compiler.load_compiled_function(io.BytesIO(data), f_globals=modules,
                                                             external_data=external)
        return function


__all__ = ["PrecompiledForward", "cache_key", "call_signature", "default_cache_dir", "module_attributes",
           "precompile_available"]
