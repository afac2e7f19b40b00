"""The saved model folder: its layout, and the functions that write and read it (EmoModelForMultiLabel's
`save_pretrained`, `from_pretrained` and `load_trained_weights` call these).

    >>> model.save_pretrained("my-model")        # save_model_folder: a temporary folder, then moved in file by file
    >>> EmoModelForMultiLabel.from_pretrained("my-model")                      # load_model_folder

Saved folder layout (`save_pretrained`) and why:
    config.json                 EmoConfig (labels, thresholds, backbone id + its config, LoRA settings, auto_map)
    thresholds.json             {label: threshold}, readable and editable (it wins over config.json when loading)
    head.safetensors            `score.*` and `projection.*` only, float32, with the labels in its metadata
    adapter/adapter_config.json         the LoRA adapter in PEFT's own layout, *for the backbone alone*: its keys
    adapter/adapter_model.safetensors   are those of `PeftModel(backbone)`, so plain peft can also apply it to the
                                base model (`PeftModel.from_pretrained(base, folder, subfolder="adapter")`). The head is
                                not part of the backbone, hence its own file rather than PEFT's modules_to_save (which
                                would tie the adapter to this wrapper's module names). In a sub-folder, not at the
                                root: transformers' `AutoModel.from_pretrained(hub_id)` takes a repo with a root-level
                                adapter_config.json for a PEFT adapter repo and loads the bare base model instead.
                                (Folders saved with the adapter at the root still load locally with from_pretrained.)
    backbone.safetensors        optional: the whole backbone (default when no LoRA is applied and it is not 4-bit);
                                otherwise the base weights are loaded from `backbone_name_or_path` (Hub or offline).
    tokenizer files
    configuration.py, modeling.py, modeling_backbone.py, modeling_files.py, modeling_predict.py,
    modeling_shared_prefix.py
                                the model's code for `trust_remote_code` (REMOTE_CODE_FILES): copies of emo_hf's own
                                files, which import only each other, never emo_hf by name
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, PretrainedConfig

from .modeling_backbone import (check_backbone_matches, is_4bit, load_base_backbone, load_saved_tokenizer,
                                match_saved_vocab, text_backbone)

logger = logging.getLogger(__name__)

HEAD_FILE = "head.safetensors"
BACKBONE_FILE = "backbone.safetensors"
ADAPTER_DIR = "adapter"  # sub-folder of the LoRA adapter files (never the root: see the module docstring)
ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
THRESHOLDS_FILE = "thresholds.json"
ADAPTER_NAME = "default"  # PEFT's default adapter name, used by peft and Unsloth alike
# The model's code, copied next to every saved model for `trust_remote_code=True` (config.json's auto_map names
# configuration.EmoConfig and modeling.EmoModelForMultiLabel; transformers fetches the files they import with them).
REMOTE_CODE_FILES = ("configuration.py", "modeling.py", "modeling_backbone.py", "modeling_files.py",
                     "modeling_predict.py", "modeling_shared_prefix.py")


# LoRA weights of the backbone in PEFT's saved layout: "base_model.model.<module path>.lora_A.weight" on disk,
# "<module path>.lora_A.default.weight" in the live module (peft and Unsloth both name the adapter "default").
def is_lora_key(key: str) -> bool:
    return any(part.startswith("lora_") for part in key.split("."))


def lora_state_dict(backbone: nn.Module) -> dict[str, torch.Tensor]:
    """The backbone's LoRA weights with PEFT's on-disk names."""
    state = {}
    for key, value in backbone.state_dict().items():
        if not is_lora_key(key):
            continue
        parts = key.split(".")
        parts = [p for i, p in enumerate(parts) if not (p == ADAPTER_NAME and i and parts[i - 1].startswith("lora_"))]
        state["base_model.model." + ".".join(parts)] = value.detach().to("cpu").contiguous()
    return state


def to_live_lora_key(key: str) -> str:
    parts = key.removeprefix("base_model.model.").split(".")
    out = []
    for i, part in enumerate(parts):
        out.append(part)
        if part.startswith("lora_") and (i + 1 >= len(parts) or parts[i + 1] != ADAPTER_NAME):
            out.append(ADAPTER_NAME)
    return ".".join(out)


def find_adapter_folder(folder: Path) -> Path | None:
    """The folder holding the LoRA adapter of the saved model `folder`: `folder/adapter`, or `folder` itself for a
    model saved with the adapter at the root (older layout); None when there is no complete adapter."""
    for candidate in (folder / ADAPTER_DIR, folder):
        if (candidate / ADAPTER_CONFIG_FILE).is_file() and (candidate / ADAPTER_WEIGHTS_FILE).is_file():
            return candidate
    return None


def load_lora_adapter(backbone: nn.Module, folder: Path) -> None:
    """Inject the LoRA adapter saved in `folder` (the adapter's own folder: adapter_config.json and
    adapter_model.safetensors) into `backbone` (in place) and load its weights, strictly."""
    from peft import LoraConfig, inject_adapter_in_model

    lora_config = LoraConfig.from_pretrained(str(folder))
    inject_adapter_in_model(lora_config, backbone, adapter_name=ADAPTER_NAME)
    saved = read_weights(folder / ADAPTER_WEIGHTS_FILE)
    live_keys = {k for k in backbone.state_dict() if is_lora_key(k)}
    state = {to_live_lora_key(k): v for k, v in saved.items()}
    missing, unexpected = sorted(live_keys - set(state)), sorted(set(state) - live_keys)
    if missing or unexpected:
        raise ValueError(f"The LoRA adapter in {str(folder)!r} does not fit the backbone: missing "
                         f"{missing[:5]}, unexpected {unexpected[:5]} ({len(missing)} / {len(unexpected)} in all). "
                         "Was it saved from a different backbone? Check backbone_name_or_path in config.json.")
    # Linear4bit LoRA layers keep their adapter weights in the compute dtype; load_state_dict copies (and casts).
    backbone.load_state_dict(state, strict=False)


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """`safetensors.torch.load_file` whose error names the file (a truncated copy says only "incomplete metadata")."""
    try:
        return load_file(str(path))
    except Exception as error:  # SafetensorError (not importable by name across versions), OSError
        raise ValueError(f"{path} is not a readable safetensors file ({error}): it is truncated or corrupt; copy it "
                         "again or save the model again") from None


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); fix it or save the model again") from None


def respect_umask(folder: Path) -> None:
    """Give `folder` and everything in it the modes the umask asks for (0755 / 0644 under umask 022): safetensors
    writes its files 0600 and mkdtemp makes 0700, whatever the umask."""
    mask = os.umask(0o022)
    os.umask(mask)
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)



def save_model_folder(model, save_directory: str | os.PathLike, *, save_base_weights: bool | None = None) -> None:
    """Write `model`'s folder (layout in this module's docstring). `save_base_weights`: None = the whole
    backbone only when no LoRA is applied and it is not 4-bit; True/False to force. Files are written to a temporary folder next to the target, then moved in one by one.
    """
    target = Path(save_directory)
    target.mkdir(parents=True, exist_ok=True)
    has_lora = model.has_lora
    if has_lora and not model.config.lora:
        raise ValueError("The backbone has LoRA layers but config.lora is empty: set model.config.lora to the "
                         "LoRA settings used (r, lora_alpha, lora_dropout, bias, target_modules).")
    quantized = is_4bit(model.backbone)
    if save_base_weights is None:
        save_base_weights = not has_lora and not quantized
    if save_base_weights and quantized:
        raise ValueError("save_base_weights=True cannot save a 4-bit backbone: its base weights are reloaded "
                         f"from {model.config.backbone_name_or_path!r}. Call save_pretrained(dir) without it.")
    if not save_base_weights and not has_lora and not model.config.backbone_name_or_path:
        raise ValueError("Neither LoRA nor backbone_name_or_path: the backbone could not be rebuilt. Use "
                         "save_pretrained(dir, save_base_weights=True).")
    # the pid in the name lets the next run remove it if this process is killed (emo_hf.atomic)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-emo-save-{os.getpid()}-", dir=target.parent))
    try:
        config = model.config
        config.architectures = [type(model).__name__]
        # AutoModelForSequenceClassification too: transformers' pipeline("text-classification") and the Hub's
        # widgets load that class (as SpanMarker / SetFit map their task classes).
        config.auto_map = {"AutoConfig": "configuration.EmoConfig", "AutoModel": "modeling.EmoModelForMultiLabel",
                           "AutoModelForSequenceClassification": "modeling.EmoModelForMultiLabel"}
        config.save_pretrained(tmp)
        (tmp / THRESHOLDS_FILE).write_text(json.dumps(config.threshold_map(), indent=2) + "\n")
        head = {f"score.{k}": v for k, v in model.score.state_dict().items()}
        if model.projection is not None:
            head.update({f"projection.{k}": v for k, v in model.projection.state_dict().items()})
        metadata = {"labels": json.dumps(config.labels), "hidden_size": str(model.hidden_size),
                    "input_mode": config.input_mode}
        save_file({k: v.detach().float().cpu().contiguous() for k, v in head.items()}, str(tmp / HEAD_FILE),
                  metadata=metadata)
        if has_lora:
            from peft import LoraConfig

            lora = dict(config.lora)
            adapter_dir = tmp / ADAPTER_DIR
            LoraConfig(base_model_name_or_path=config.backbone_name_or_path, **lora).save_pretrained(
                str(adapter_dir))
            save_file(lora_state_dict(model.backbone), str(adapter_dir / ADAPTER_WEIGHTS_FILE))
        if save_base_weights:
            base = {}
            for key, value in model.backbone.state_dict().items():
                if is_lora_key(key):
                    continue
                base[key.replace(".base_layer.", ".")] = value.detach().cpu().clone().contiguous()
            save_file(base, str(tmp / BACKBONE_FILE))
        if model.tokenizer is not None:
            model.tokenizer.save_pretrained(str(tmp))
        here = Path(__file__).resolve().parent
        for name in REMOTE_CODE_FILES:
            shutil.copyfile(here / name, tmp / name)
        # Files of an earlier save that this one does not write would be stale: remove them (the adapter
        # folder is replaced as a whole; a root-level adapter of the older layout always goes).
        for name in (ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, BACKBONE_FILE):
            if not (tmp / name).exists() and (target / name).is_file():
                (target / name).unlink()
        if (target / ADAPTER_DIR).is_dir():
            shutil.rmtree(target / ADAPTER_DIR)
        respect_umask(tmp)
        for path in sorted(tmp.iterdir()):
            os.replace(path, target / path.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_model_folder(cls, pretrained_model_name_or_path: str | os.PathLike, *, config=None,
                      backbone_name_or_path: str | None = None, labels: Sequence[str] | None = None,
                      load_in_4bit: bool | None = None, dtype: torch.dtype | str | None = None, device_map: Any = None,
                      revision: str | None = None, token: str | bool | None = None, cache_dir: str | None = None,
                      local_files_only: bool = False, trust_remote_code: bool | None = None):
    """Load a saved classifier: folder or Hub repo. The base backbone comes from the folder (backbone.safetensors)
    or from `config.backbone_name_or_path` (override with `backbone_name_or_path=`, e.g. if the original folder
    moved), then the LoRA adapter and the head are applied. `labels=` (optional) asserts the expected labels.
    A model trained in 4-bit reloads in 4-bit (NF4, bitsandbytes) when a GPU is present (`load_in_4bit=` to force).
    Missing or mismatched files raise; a head is never left random.
    """
    folder = Path(str(pretrained_model_name_or_path)).expanduser()
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(str(pretrained_model_name_or_path), revision=revision, token=token,
                                        cache_dir=cache_dir, local_files_only=local_files_only))
    if not isinstance(config, PretrainedConfig):
        config = cls.config_class.from_pretrained(str(folder))
    name = f"{str(pretrained_model_name_or_path)!r}"
    if not (folder / HEAD_FILE).is_file():
        raise FileNotFoundError(
            f"{name} has no {HEAD_FILE} (the score head): it is not a complete EmoModelForMultiLabel folder, or "
            f"the save was interrupted. Save the model again with model.save_pretrained({name}).")
    adapter_dir = find_adapter_folder(folder)
    has_adapter = adapter_dir is not None
    has_base = (folder / BACKBONE_FILE).is_file()
    if config.lora and not has_adapter:
        raise FileNotFoundError(
            f"{name} was trained with LoRA (config.json 'lora': {config.lora}) but {ADAPTER_DIR}/"
            f"{ADAPTER_CONFIG_FILE} and/or {ADAPTER_DIR}/{ADAPTER_WEIGHTS_FILE} are missing: copy them back or "
            "save the model again.")
    if labels is not None and list(labels) != config.labels:
        raise ValueError(f"{name} classifies {config.labels}, not the expected labels {list(labels)}. Load the "
                         "right model, or drop labels= to accept its own.")
    if (folder / THRESHOLDS_FILE).is_file():
        thresholds = read_json(folder / THRESHOLDS_FILE)
        if not isinstance(thresholds, dict) or set(thresholds) != set(config.labels):
            raise ValueError(f"{folder / THRESHOLDS_FILE} has labels {sorted(thresholds)} but config.json has "
                             f"{config.labels}: they must match (edit thresholds.json or save the model again).")
        config.set_thresholds(thresholds)  # thresholds.json is the readable, editable copy: it wins

    want_4bit = config.load_in_4bit if load_in_4bit is None else bool(load_in_4bit)
    if want_4bit and not torch.cuda.is_available():
        logger.warning("This model was trained in 4-bit; no GPU here, so its backbone loads in full precision.")
        want_4bit = False
    if dtype == "auto":  # what pipeline() passes: the saved precision, i.e. the default below
        dtype = None
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    dtype = dtype or (torch.bfloat16 if want_4bit else torch.float32)
    quantization_config = None
    if want_4bit:
        from transformers import BitsAndBytesConfig

        # NF4 with double quantisation and bf16 compute: what Unsloth's load_in_4bit uses.
        quantization_config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                 bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype)
        device_map = device_map if device_map is not None else {"": torch.cuda.current_device()}

    if has_base:
        base = text_backbone(AutoModel.from_config(config.backbone_config, dtype=dtype))
        state = read_weights(folder / BACKBONE_FILE)
        result = base.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(f"{folder / BACKBONE_FILE} does not fit the backbone config: missing "
                             f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}.")
    else:
        source = backbone_name_or_path or config.backbone_name_or_path
        if not source:
            raise ValueError(f"{name} has neither {BACKBONE_FILE} nor backbone_name_or_path in config.json: "
                             "pass from_pretrained(folder, backbone_name_or_path='<base model>').")
        base = load_base_backbone(source, config.backbone_gguf_file, dtype=dtype,
                                   quantization_config=quantization_config, device_map=device_map)
        match_saved_vocab(base, config.backbone_config)
        check_backbone_matches(config.backbone_config, base.config, source)
    model = cls(config, backbone=base)
    if has_adapter:
        load_lora_adapter(model.backbone, adapter_dir)
    load_head(model, folder)
    if (folder / "tokenizer_config.json").is_file():
        model.tokenizer = load_saved_tokenizer(folder, config, trust_remote_code=trust_remote_code)
    model._mark_if_quantized()
    if want_4bit:
        device = next(model.backbone.parameters()).device
        model.score.to(device)
        if model.projection is not None:
            model.projection.to(device)
    elif device_map is not None and isinstance(device_map, (str, torch.device)):
        model.to(device_map)
    model.eval()
    return model


def load_trained_weights(model, folder: str | os.PathLike) -> None:
    """Load the trained parts of a saved folder (head, projection, LoRA weights, thresholds) into this live
    model, in place: for resuming from / restoring the best Trainer checkpoint. Strict: mismatches raise."""
    folder = Path(folder)
    if not (folder / HEAD_FILE).is_file():
        raise FileNotFoundError(f"{str(folder)!r} has no {HEAD_FILE}: not a checkpoint of this model.")
    saved = type(model).config_class.from_pretrained(str(folder))
    if saved.labels != model.config.labels or saved.input_mode != model.config.input_mode:
        raise ValueError(f"{str(folder)!r} holds a model for labels {saved.labels} ({saved.input_mode!r} mode); "
                         f"this one is for {model.config.labels} ({model.config.input_mode!r}).")
    load_head(model, folder)
    adapter_dir = find_adapter_folder(folder)
    has_adapter = adapter_dir is not None
    if model.has_lora != has_adapter:
        raise ValueError(f"{str(folder)!r} {'has' if has_adapter else 'has no'} LoRA adapter but this model "
                         f"{'has' if model.has_lora else 'has no'} LoRA layers.")
    if has_adapter:
        live = {k for k in model.backbone.state_dict() if is_lora_key(k)}
        state = {to_live_lora_key(k): v for k, v in read_weights(adapter_dir / ADAPTER_WEIGHTS_FILE).items()}
        if set(state) != live:
            raise ValueError(f"The LoRA weights in {str(folder)!r} do not fit this model's LoRA layers "
                             f"(e.g. {sorted(set(state) ^ live)[:3]}).")
        model.backbone.load_state_dict(state, strict=False)
    elif (folder / BACKBONE_FILE).is_file():
        state = read_weights(folder / BACKBONE_FILE)
        result = model.backbone.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(f"{folder / BACKBONE_FILE} does not fit the backbone: missing "
                             f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}.")
    thresholds_file = folder / THRESHOLDS_FILE
    model.set_thresholds(read_json(thresholds_file) if thresholds_file.is_file() else saved.thresholds)


def load_head(model, folder: Path) -> None:
    from safetensors import safe_open

    path = folder / HEAD_FILE
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as error:  # SafetensorError: a truncated or garbage file
        raise ValueError(f"{path} is not a readable safetensors file ({error}): it is truncated or corrupt; "
                         "copy it again or save the model again") from None
    saved_labels = json.loads(metadata.get("labels", "null"))
    if saved_labels is not None and saved_labels != model.config.labels:
        raise ValueError(f"{path} was trained for labels {saved_labels} but config.json lists "
                         f"{model.config.labels}: the head would be meaningless. Restore the matching config.json.")
    state = read_weights(path)
    expected = {f"score.{k}": v for k, v in model.score.state_dict().items()}
    if model.projection is not None:
        expected.update({f"projection.{k}": v for k, v in model.projection.state_dict().items()})
    problems = [f"{k}: missing" for k in expected if k not in state]
    problems += [f"{k}: unexpected" for k in state if k not in expected]
    problems += [f"{k}: shape {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
                 if k in state and state[k].shape != v.shape]
    if problems:
        raise ValueError(f"{path} does not fit this model (labels {model.config.labels}, hidden size "
                         f"{model.hidden_size}, input_mode {model.config.input_mode!r}): {problems[:6]}.")
    model.score.load_state_dict({k.removeprefix("score."): v for k, v in state.items() if k.startswith("score.")})
    if model.projection is not None:
        model.projection.load_state_dict({k.removeprefix("projection."): v for k, v in state.items()
                                         if k.startswith("projection.")})

