"""emo_hf: a multi-label emotion classifier on an open-weight language model, the Hugging Face way."""

from __future__ import annotations

import importlib.util
import sys

from .labels import DEFAULT_LABELS, GOEMOTIONS_LABELS, resolve_labels

__version__ = "0.1.0"

__all__ = ["DEFAULT_LABELS", "GOEMOTIONS_LABELS", "resolve_labels", "EmoConfig", "EmoModelForMultiLabel",
           "register_auto_classes"]

def _initializing(name: str) -> bool:
    module = sys.modules.get(name)
    return module is not None and getattr(getattr(module, "__spec__", None), "_initializing", False)


def register_auto_classes() -> None:
    """Register EmoConfig / EmoModelForMultiLabel with AutoConfig / AutoModel (idempotent).

    emo_hf.configuration and emo_hf.modeling register themselves when imported; this imports them. It runs by itself
    as soon as transformers is imported (or at once if it already is), so `AutoModel.from_pretrained(folder)` works
    after `import emo_hf` without trust_remote_code, while `import emo_hf` alone (the CLI) stays free of the slow
    torch/transformers import.
    """
    if _initializing("emo_hf.configuration") or _initializing("emo_hf.modeling"):
        return  # transformers is being imported by one of them: it registers itself when it finishes
    importlib.import_module("emo_hf.modeling")  # imports emo_hf.configuration too


class _RegisterAfterTransformersImport:
    """A meta-path finder that lets `import transformers` run normally, then calls register_auto_classes()."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "transformers":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            try:
                register_auto_classes()
            except Exception as error:  # never break `import transformers` itself
                import warnings

                warnings.warn(f"emo_hf could not register its Auto classes: {error!r}", stacklevel=2)

        spec.loader.exec_module = exec_then_register
        return spec


if "transformers" in sys.modules:
    register_auto_classes()
elif not any(isinstance(finder, _RegisterAfterTransformersImport) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterTransformersImport())


def __getattr__(name: str):
    # EmoConfig / EmoModelForMultiLabel on demand: importing them pulls in torch and transformers.
    if name == "EmoConfig":
        from .configuration import EmoConfig

        return EmoConfig
    if name == "EmoModelForMultiLabel":
        from .modeling import EmoModelForMultiLabel

        return EmoModelForMultiLabel
    raise AttributeError(f"module 'emo_hf' has no attribute {name!r}")
