"""Upload a folder to the Hugging Face Hub (a model or a dataset repository) in one commit.

    from emo_hf.hub import upload_folder
    url = upload_folder("runs/export", "my-org/emo-minilm")                       # model repo, branch main
    url = upload_folder("runs/data/hub", "my-org/emo-data", repo_type="dataset")  # `emo-hf data build --push-to-hub`

Everything goes through huggingface_hub (`HfApi.create_repo`, `create_branch`, `create_commit`); this module only adds
what a publishing command needs on top: up-front validation of the repo id and the folder, a token check before any
network call, one commit per push, and error messages that say what to do and never contain the token.

The endpoint is `HF_ENDPOINT` read when `upload_folder` is called (huggingface_hub reads it once, at import, into
`huggingface_hub.constants.ENDPOINT`; reading it again here means setting it after importing transformers still works
for uploads). Downloads (`hf_hub_download`, `from_pretrained`) use the import-time value: set `HF_ENDPOINT` before
importing huggingface_hub / transformers to download from another endpoint.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

logger = logging.getLogger(__name__)

REPO_TYPES = ("model", "dataset")
DEFAULT_COMMIT_MESSAGE = "Upload with emo_hf"
# Masks anything shaped like a Hugging Face token (hf_ + 30-odd letters) in messages, on top of the token in use.
_TOKEN_PATTERN = re.compile(r"hf_[A-Za-z0-9]{8,}")
_COMMIT_HASH = re.compile(r"[0-9a-f]{40}")


class HubAuthError(RuntimeError):
    """No token, or the Hub rejected it (401) or refused the write (403). The message says how to fix it."""


class HubUploadError(RuntimeError):
    """The Hub answered an upload request with another error. The message quotes the Hub's answer."""


def hub_endpoint() -> str:
    """The Hub endpoint in use: `HF_ENDPOINT` now, else the one huggingface_hub read at import (huggingface.co)."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def validate_repo_id(repo_id: str) -> str:
    """Check that `repo_id` is `namespace/name` as the Hub accepts it; return it unchanged.

    >>> validate_repo_id("my-org/emo-minilm")
    'my-org/emo-minilm'
    """
    from huggingface_hub.utils import HFValidationError
    from huggingface_hub.utils import validate_repo_id as hf_validate_repo_id

    example = "a valid id looks like 'my-org/emo-minilm' (namespace/name: letters, digits, '-', '_', '.')"
    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"repo id {repo_id!r} must be 'namespace/name' (your user or organisation, then a name); {example}")
    try:
        hf_validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"repo id {repo_id!r} is not valid on the Hub: {error} {example}") from None
    return repo_id


def resolve_token(token: str | None = None) -> str:
    """The token to upload with: `token`, else `HF_TOKEN`, else the one saved by `hf auth login`.

    Raises HubAuthError when there is none, before anything is sent.
    """
    if token:
        return token
    from huggingface_hub import get_token

    found = get_token()
    if not found:
        raise HubAuthError(
            "no Hugging Face token found: set the HF_TOKEN environment variable to a token with write access "
            "(https://huggingface.co/settings/tokens), or run `hf auth login` once, then run the command again"
        )
    return found


def mask_token(text: str, token: str | None = None) -> str:
    """`text` with `token` (and anything shaped like an `hf_...` token) replaced by `hf_***`."""
    if token:
        text = text.replace(token, "hf_***")
    return _TOKEN_PATTERN.sub("hf_***", text)


def list_folder_files(folder: str | Path) -> list[str]:
    """Files of `folder` that an upload sends, as sorted posix paths relative to it (no .git, no caches)."""
    from huggingface_hub.utils import filter_repo_objects
    from huggingface_hub.utils._paths import DEFAULT_IGNORE_PATTERNS

    root = Path(folder)
    relative = sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())
    return list(filter_repo_objects(relative, ignore_patterns=[*DEFAULT_IGNORE_PATTERNS, "**/__pycache__/**"]))


def upload_folder(
    folder: str | Path,
    repo_id: str,
    *,
    repo_type: str = "model",
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
) -> str:
    """Create `repo_id` if needed and upload every file of `folder` to it in one commit; return the commit URL.

    `revision` is a branch name; it is created from `main` when it does not exist yet. `private` only applies
    when the repository is created. The token is `token`, else `HF_TOKEN`, else the saved login.

    >>> upload_folder("runs/export", "my-org/emo-minilm", revision="v1", commit_message="First model")  # doctest: +SKIP
    'https://huggingface.co/my-org/emo-minilm/commit/0123abc...'
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"folder to upload {str(folder)!r} does not exist or is not a folder; "
            f"export a model first (emo-hf export MODEL_DIR {folder}) or pass an existing folder"
        )
    validate_repo_id(repo_id)
    if repo_type not in REPO_TYPES:
        raise ValueError(f"repo_type={repo_type!r} is not supported; use one of {REPO_TYPES}, e.g. repo_type='dataset'")
    if revision is not None and (not revision.strip() or _COMMIT_HASH.fullmatch(revision)):
        raise ValueError(
            f"revision={revision!r} must be a branch name (commits go on top of a branch), e.g. revision='v1'"
        )
    files = list_folder_files(folder)
    if not files:
        raise FileNotFoundError(f"folder {str(folder)!r} has no files to upload")
    token = resolve_token(token)

    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    endpoint = hub_endpoint()
    api = HfApi(endpoint=endpoint, token=token)
    target = f"{repo_type} repo {repo_id!r} at {endpoint}" + (f" (branch {revision!r})" if revision else "")
    step = "creating"
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        if revision is not None and revision != "main":
            step = "creating the branch of"
            api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
        step = "committing to"
        logger.info("Uploading %d files from %s to %s", len(files), folder, target)
        # One `create_commit` with every file rather than `HfApi.upload_folder`: with hf_xet installed,
        # huggingface_hub 1.x streams `upload_folder` through a pipeline that may split a folder into several
        # commits (huggingface_hub/_upload_pipeline.py); one commit means a failed push leaves nothing half-uploaded.
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name)) for name in files]
        info = api.create_commit(
            repo_id,
            operations,
            commit_message=commit_message or DEFAULT_COMMIT_MESSAGE,
            repo_type=repo_type,
            revision=revision,
        )
    except HfHubHTTPError as error:
        raise _explain(error, step=step, target=target, token=token) from None
    except ValueError as error:  # e.g. the Hub refused the README.md metadata
        raise ValueError(mask_token(f"{step} {target} failed: {error}", token)) from None
    url = str(info.commit_url)
    logger.info("Uploaded %d files: %s", len(files), url)
    return url


def _explain(error: Exception, *, step: str, target: str, token: str) -> RuntimeError:
    """A message for an HTTP error from the Hub that says what to do; the token is masked out of it."""
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    server_message = getattr(error, "server_message", None) or str(error).strip().splitlines()[0]
    if status == 401:
        message = (
            f"the Hub rejected the token (401 Unauthorized) while {step} {target}: {server_message}. "
            "Set HF_TOKEN to a valid token with write access (https://huggingface.co/settings/tokens) "
            "or run `hf auth login`, then run the command again"
        )
        return HubAuthError(mask_token(message, token))
    if status == 403:
        message = (
            f"the Hub refused the write (403 Forbidden) while {step} {target}: {server_message}. "
            "The token is valid but cannot write to this namespace: use a token with write access to it, "
            "or push to a namespace you own (e.g. YOUR_USER/NAME)"
        )
        return HubAuthError(mask_token(message, token))
    message = f"the Hub answered {status or 'an error'} while {step} {target}: {server_message}"
    return HubUploadError(mask_token(message, token))
