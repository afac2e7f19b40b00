"""Export a trained emo_hf model into a self-contained folder, and push that folder to the Hugging Face Hub.

    from emo_hf.export import export_model, push_model
    export_model("runs/default/model", "runs/export")                 # -> Path("runs/export"), with README.md
    push_model("runs/default/model", "my-org/emo-minilm")             # -> commit URL on the Hub

The exported folder holds what `AutoModel.from_pretrained(folder_or_repo, trust_remote_code=True)` needs and nothing
else (no Trainer checkpoints or logs): config.json (with auto_map), thresholds.json, head.safetensors, the LoRA adapter
(adapter/adapter_config.json + adapter/adapter_model.safetensors) when the model has one, backbone.safetensors when
the model saved its whole backbone, the tokenizer files (text mode), the model's code (configuration.py, modeling.py
and the files it imports), report.json / training_info.json and the charts they name when present, and a README.md
model card generated from them (emo_hf.model_card).
Nothing heavy is imported here (no torch): export checks files, it does not load the model.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

MODEL_TYPE = "emo_multilabel"
REQUIRED_FILES = ("config.json", "thresholds.json", "head.safetensors", "configuration.py", "modeling.py")
# ...and the sibling files modeling.py imports (remote_code_files): emo_hf.modeling_files.REMOTE_CODE_FILES for a model
# saved now, configuration.py alone for one saved before modeling.py was split (2026-12-04).
# In a sub-folder: with adapter_config.json at the repo root, transformers' AutoModel.from_pretrained(hub_id) would
# take the repo for a PEFT adapter and load its bare base model (see emo_hf/modeling_files.py's docstring).
ADAPTER_FILES = ("adapter/adapter_config.json", "adapter/adapter_model.safetensors")
ROOT_ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")  # the older layout, refused
OPTIONAL_FILES = ("backbone.safetensors", "report.json", "report.md", "training_info.json")
# What transformers' tokenizers save (save_pretrained); whichever of them the model folder has is exported.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.txt", "vocab.json", "merges.txt", "tokenizer.model", "spiece.model",
                   "sentencepiece.bpe.model", "chat_template.jinja", "chat_template.json")
SAVE_AGAIN = "save the model again (model.save_pretrained(MODEL_DIR), or rerun `emo-hf train ... --out MODEL_DIR`)"


def _is_hub_id(name: object) -> bool:
    from .model_card_sections import _is_hub_id as is_hub_id

    return is_hub_id(name)


def check_model_folder(model_dir: str | Path) -> dict:
    """Check that `model_dir` is a complete trained emo_hf model; return its config.json as a dict.

    Raises FileNotFoundError / ValueError naming every missing or inconsistent file and how to fix it.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"model folder {str(model_dir)!r} does not exist; pass the folder a training run "
                                "saved (e.g. runs/default/model)")
    config_file = model_dir / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{str(model_dir)!r} has no config.json, so it is not a saved model; pass the folder "
                                "that `emo-hf train --out` or model.save_pretrained wrote")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{config_file} is not valid JSON ({error}); {SAVE_AGAIN}") from None
    if config.get("model_type") != MODEL_TYPE:
        raise ValueError(f"{config_file} has model_type {config.get('model_type')!r}, not {MODEL_TYPE!r}: "
                         f"{str(model_dir)!r} is not an emo_hf model; pass a folder trained with emo_hf")
    problems = [f"{name} is missing" for name in dict.fromkeys((*REQUIRED_FILES, *remote_code_files(model_dir)))
                if not (model_dir / name).is_file()]
    if any((model_dir / name).is_file() for name in ROOT_ADAPTER_FILES):
        problems.append("the LoRA adapter files (adapter_config.json, adapter_model.safetensors) are at the folder "
                        "root (older layout), where transformers would load a Hub repo of it as a bare PEFT adapter "
                        "repo; move them into adapter/ (mkdir adapter && mv adapter_config.json "
                        "adapter_model.safetensors adapter/)")
    if config.get("lora"):
        problems += [f"{name} is missing (config.json says the model was trained with LoRA)"
                     for name in ADAPTER_FILES if not (model_dir / name).is_file()]
    elif not (model_dir / "backbone.safetensors").is_file() and not config.get("backbone_name_or_path"):
        problems.append("there is neither backbone.safetensors nor a backbone_name_or_path in config.json, so the "
                        "backbone cannot be rebuilt")
    if config.get("input_mode", "text") == "text" and not (model_dir / "tokenizer_config.json").is_file():
        problems.append("the tokenizer files (tokenizer_config.json, ...) are missing; a text-mode model needs them")
    if not config.get("auto_map"):
        problems.append("config.json has no auto_map, so trust_remote_code cannot find the model code")
    id2label = config.get("id2label") or {}
    labels = [id2label[key] for key in sorted(id2label, key=int)]
    if not labels:
        problems.append("config.json has no id2label (the label names)")
    thresholds_file = model_dir / "thresholds.json"
    if thresholds_file.is_file() and labels:
        try:
            thresholds = json.loads(thresholds_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            thresholds = None
            problems.append(f"thresholds.json is not valid JSON ({error})")
        if thresholds is not None and (not isinstance(thresholds, dict) or set(thresholds) != set(labels)):
            problems.append(f"thresholds.json must map each label of config.json {labels} to a threshold; it has "
                            f"{sorted(thresholds) if isinstance(thresholds, dict) else thresholds!r}")
    for name in ("adapter/adapter_model.safetensors", "backbone.safetensors"):
        if (model_dir / name).is_file():
            _head_labels(model_dir / name)  # opens the header: a truncated or garbage file is named here
    head_file = model_dir / "head.safetensors"
    if head_file.is_file() and labels:
        head_labels = _head_labels(head_file)
        if head_labels is not None and head_labels != labels:
            problems.append(f"head.safetensors was trained for labels {head_labels}, config.json says {labels}")
    if problems:
        raise FileNotFoundError(f"{str(model_dir)!r} is not a complete emo_hf model: " + "; ".join(problems)
                                + f". Fix: {SAVE_AGAIN}")
    return config


def _head_labels(head_file: Path) -> list[str] | None:
    """The labels stored in head.safetensors' metadata by save_pretrained (None if it has none). Opening the file
    checks its header and length, so a truncated or garbage file raises here, named."""
    from safetensors import safe_open

    try:
        with safe_open(str(head_file), framework="numpy") as handle:
            metadata = handle.metadata() or {}
    except Exception as error:  # safetensors raises its own error types for a corrupt header
        raise ValueError(f"{head_file} is not a readable safetensors file ({error}); {SAVE_AGAIN}") from None
    return json.loads(metadata["labels"]) if "labels" in metadata else None


def _inside(model_dir: Path, relative: object) -> str | None:
    """`relative` as a posix path when it names a file inside model_dir (charts named by the JSON files)."""
    if not isinstance(relative, str) or not relative:
        return None
    path = (model_dir / relative).resolve()
    root = model_dir.resolve()
    if root not in path.parents or not path.is_file():
        return None
    return path.relative_to(root).as_posix()


def remote_code_files(model_dir: str | Path) -> list[str]:
    """The `.py` files of the folder's remote code: modeling.py and configuration.py and, transitively, every sibling
    they import relatively (`from .modeling_files import ...`), as transformers fetches them for trust_remote_code.
    Parsed with `ast` rather than transformers.dynamic_module_utils.get_relative_import_files, which would import
    transformers (export imports nothing heavy)."""
    import ast

    model_dir = Path(model_dir)
    found: list[str] = []
    pending = ["modeling.py", "configuration.py"]
    while pending:
        name = pending.pop(0)
        if name in found:
            continue
        found.append(name)
        path = model_dir / name
        if not path.is_file():
            continue  # reported as missing by the caller
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (SyntaxError, UnicodeDecodeError) as error:
            raise ValueError(f"{path} is not valid Python ({error}); {SAVE_AGAIN}") from None
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                pending.append(f"{node.module.split('.')[0]}.py")
    return found


def exported_files(model_dir: str | Path) -> list[str]:
    """The files of `model_dir` that an export copies (relative posix paths), README.md excluded (regenerated)."""
    model_dir = Path(model_dir)
    names = [name for name in (*REQUIRED_FILES, *remote_code_files(model_dir), *ADAPTER_FILES, *OPTIONAL_FILES,
                               *TOKENIZER_FILES) if (model_dir / name).is_file()]
    linked = []
    for json_name, keys in (("report.json", ("plots",)), ("training_info.json", ("data", "chart"))):
        if not (model_dir / json_name).is_file():
            continue
        value: object = json.loads((model_dir / json_name).read_text(encoding="utf-8"))
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        values = value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]
        linked += [path for path in (_inside(model_dir, item) for item in values) if path]
    return sorted(set(names) | set(linked))


def export_model(model_dir: str | Path, out: str | Path, *, repo_id: str | None = None) -> Path:
    """Copy the trained model in `model_dir` into `out` with a freshly generated README.md; return `out`.

    `out` must not exist, be empty, or hold an earlier export (replaced as a whole). The new folder is built next
    to `out` and moved into place at the end, so `out` is never half-written. `repo_id` goes into the card's loading
    examples (push passes it).

    >>> export_model("runs/default/model", "runs/export")  # doctest: +SKIP
    PosixPath('runs/export')
    """
    from .model_card import write_model_card

    model_dir, out = Path(model_dir), Path(out)
    config = check_model_folder(model_dir)
    if out.resolve() == model_dir.resolve() or model_dir.resolve() in out.resolve().parents:
        raise ValueError(f"export target {str(out)!r} is the model folder or inside it; pick another folder, "
                         f"e.g. emo-hf export {model_dir} {model_dir.parent / 'export'}")
    if out.exists() and not _replaceable(out):
        raise ValueError(f"export target {str(out)!r} exists and is not an earlier emo_hf export; remove it "
                         "or pick another folder")
    backbone = config.get("backbone_name_or_path")
    if not (model_dir / "backbone.safetensors").is_file() and backbone and not _is_hub_id(backbone):
        logger.warning("The backbone is loaded from the local path %r, which only exists on this machine: the "
                       "exported model loads elsewhere only with from_pretrained(..., backbone_name_or_path=...).",
                       backbone)
    encoder = config.get("encoder_name")
    if config.get("input_mode") == "embedding" and encoder and not _is_hub_id(encoder):
        logger.warning("The sentence encoder is the local path %r: predict() elsewhere needs the same encoder "
                       "(set encoder_name in config.json to its Hub id).", encoder)
    from .atomic import make_temp_dir, remove_stale_temps, replace_dir, respect_umask
    from .checkpoints import check_out_dir, fault_point

    if not out.exists():
        check_out_dir(out, known=(), flag="OUT")  # a place this user can write to, before any copying
    prefixes = (f".tmp-emo-export-{out.name}-", f".tmp-emo-export-old-{out.name}-")
    remove_stale_temps(out.parent, prefixes)  # what an export killed earlier left next to OUT
    staging = make_temp_dir(out.parent, prefixes[0])
    try:
        files = exported_files(model_dir)
        for name in files:
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(model_dir / name, staging / name)
            fault_point("export.copy")
        write_model_card(staging, repo_id=repo_id, name=out.name)  # the final name, not the staging one
        left_out = sorted({p.relative_to(model_dir).parts[0] for p in model_dir.rglob("*") if p.is_file()}
                          - {Path(name).parts[0] for name in files} - {"README.md"})
        if left_out:
            logger.info("Not exported (not part of a trained model): %s", ", ".join(left_out))
        respect_umask(staging)  # copy2 keeps the source's modes (0600 safetensors of older saves)
        fault_point("export.staged")
        replace_dir(staging, out, prefixes[1])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("Exported %d files and README.md to %s", len(files), out)
    return out


def _replaceable(out: Path) -> bool:
    if not out.is_dir():
        return False
    if not any(out.iterdir()):
        return True
    try:
        config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return config.get("model_type") == MODEL_TYPE and (out / "README.md").is_file()


def push_model(
    model_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
) -> str:
    """Export `model_dir` to a temporary folder and upload it to `repo_id` in one commit; return the commit URL.

    >>> push_model("runs/default/model", "my-org/emo-minilm", private=True)  # doctest: +SKIP
    'https://huggingface.co/my-org/emo-minilm/commit/...'
    """
    from .hub import resolve_token, upload_folder, validate_repo_id

    # Everything that can fail without the network fails first: repo id, token, model files.
    validate_repo_id(repo_id)
    token = resolve_token(token)
    config = check_model_folder(model_dir)
    backbone = config.get("backbone_name_or_path")
    if not (Path(model_dir) / "backbone.safetensors").is_file() and not _is_hub_id(backbone):
        raise ValueError(
            f"the model's backbone_name_or_path {backbone!r} is not a Hub id, so the pushed model could not load its "
            "backbone anywhere else. Train from a Hub id (e.g. --backbone sentence-transformers/all-MiniLM-L6-v2; "
            "emo_hf maps known ids to offline copies) or set backbone_name_or_path in config.json to the Hub id of "
            "the same model")
    encoder = config.get("encoder_name")
    if config.get("input_mode") == "embedding" and not _is_hub_id(encoder):
        raise ValueError(
            f"the model embeds texts with the sentence encoder {encoder!r}, which is not a Hub id, so the pushed model "
            "could not embed texts anywhere else. Set encoder_name in config.json to the encoder's Hub id (e.g. "
            "sentence-transformers/all-MiniLM-L6-v2) or train with one")
    with tempfile.TemporaryDirectory(prefix=".tmp-emo-push-") as temporary:
        folder = export_model(model_dir, Path(temporary) / repo_id.split("/")[-1], repo_id=repo_id)
        return upload_folder(folder, repo_id, repo_type="model", private=private, revision=revision,
                             commit_message=commit_message or f"Upload {repo_id.split('/')[-1]} with emo_hf",
                             token=token)
