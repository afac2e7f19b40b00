"""emo_hf.hub.upload_folder against the stand-in Hub (tests/hub_server.py) through HF_ENDPOINT, with the real
huggingface_hub client on both sides: upload here, download in a fresh process."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
from huggingface_hub import constants
from hub_server import TOKEN, hub, subprocess_env  # noqa: F401  (hub is a pytest fixture)

from emo_hf.hub import HubAuthError, HubUploadError, upload_folder

DOWNLOAD = """
import hashlib, json, os, sys
from huggingface_hub import hf_hub_download, snapshot_download
repo_id, repo_type, revision = sys.argv[1], sys.argv[2], sys.argv[3]
folder = snapshot_download(repo_id, repo_type=repo_type, revision=revision)
files = {}
for root, _, names in os.walk(folder):
    for name in names:
        path = os.path.join(root, name)
        files[os.path.relpath(path, folder)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
one = hf_hub_download(repo_id, "sub/weights.bin", repo_type=repo_type, revision=revision)
print(json.dumps({"files": files, "one": hashlib.sha256(open(one, "rb").read()).hexdigest()}))
"""


def make_folder(root: Path) -> Path:
    folder = root / "to_upload"
    (folder / "sub").mkdir(parents=True)
    (folder / "README.md").write_text("---\nlicense: apache-2.0\ntags:\n- emo_hf\n---\n\n# A folder\n")
    (folder / "config.json").write_text(json.dumps({"model_type": "emo_multilabel"}))
    (folder / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 64)
    (folder / ".git").mkdir()  # never uploaded
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return folder


def sha256s(folder: Path) -> dict[str, str]:
    return {path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in folder.rglob("*") if path.is_file() and ".git" not in path.relative_to(folder).parts}


def download(server, tmp_path: Path, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict:
    run = subprocess.run([sys.executable, "-c", DOWNLOAD, repo_id, repo_type, revision],
                         env=subprocess_env(server, tmp_path), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_upload_in_one_commit_then_download_in_a_fresh_process(hub, tmp_path: Path):
    folder = make_folder(tmp_path)
    # HF_ENDPOINT was set after huggingface_hub read it at import: the upload must still go to the stand-in.
    assert constants.ENDPOINT != hub.url
    url = upload_folder(folder, "my-org/emo-test", commit_message="First upload")
    repo = hub.repo("my-org/emo-test")
    assert repo is not None and not repo.private
    head = repo.branches["main"]
    assert url == f"{hub.url}/my-org/emo-test/commit/{head}"
    assert repo.commits[head].message == "First upload"
    assert repo.commits[repo.commits[head].parent].parent is None  # initial commit + exactly one commit
    assert [c for c in hub.requests if "/commit/" in c[1]] == [("POST", "/api/models/my-org/emo-test/commit/main", 200)]
    assert ".git/HEAD" not in hub.files("my-org/emo-test")

    downloaded = download(hub, tmp_path, "my-org/emo-test")
    expected = sha256s(folder)
    assert {k: v for k, v in downloaded["files"].items() if k != ".gitattributes"} == expected
    assert downloaded["one"] == expected["sub/weights.bin"]


def test_second_upload_adds_one_commit_and_keeps_unchanged_files(hub, tmp_path: Path):
    folder = make_folder(tmp_path)
    upload_folder(folder, "my-org/emo-test")
    first = hub.repo("my-org/emo-test").branches["main"]
    (folder / "config.json").write_text(json.dumps({"model_type": "emo_multilabel", "changed": True}))
    upload_folder(folder, "my-org/emo-test")
    repo = hub.repo("my-org/emo-test")
    assert repo.commits[repo.branches["main"]].parent == first
    assert json.loads(hub.files("my-org/emo-test")["config.json"]) == {"model_type": "emo_multilabel", "changed": True}


def test_revision_creates_the_branch_and_leaves_main_alone(hub, tmp_path: Path):
    folder = make_folder(tmp_path)
    upload_folder(folder, "my-org/emo-test", revision="v1", private=True)
    repo = hub.repo("my-org/emo-test")
    assert repo.private and set(repo.branches) == {"main", "v1"}
    assert set(hub.files("my-org/emo-test")) == {".gitattributes"}
    assert set(hub.files("my-org/emo-test", revision="v1")) == {".gitattributes", *sha256s(folder)}


def test_dataset_repo_round_trip(hub, tmp_path: Path):
    folder = make_folder(tmp_path)
    url = upload_folder(folder, "my-org/emo-data", repo_type="dataset")
    assert url.startswith(f"{hub.url}/datasets/my-org/emo-data/commit/")
    assert hub.repo("my-org/emo-data") is None and hub.repo("my-org/emo-data", "dataset") is not None
    downloaded = download(hub, tmp_path, "my-org/emo-data", repo_type="dataset")
    assert downloaded["one"] == sha256s(folder)["sub/weights.bin"]


def test_no_token_fails_before_sending_anything(hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubAuthError, match="HF_TOKEN.*hf auth login"):
        upload_folder(make_folder(tmp_path), "my-org/emo-test")
    assert hub.requests == [] and hub.repos == {}


def test_rejected_token_is_explained_masked_and_uploads_nothing(hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    wrong = "hf_WrongToken0123456789abcdefWRONG"
    monkeypatch.setenv("HF_TOKEN", wrong)
    with pytest.raises(HubAuthError, match="401") as raised:
        upload_folder(make_folder(tmp_path), "my-org/emo-test")
    message = "".join(traceback.format_exception(raised.value))
    assert "rejected the token" in message and "HF_TOKEN" in message
    assert wrong not in message and TOKEN not in message
    assert hub.repos == {}


def test_read_only_token_gets_a_403_message(hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    hub.read_only_tokens["hf_ReadOnly0123456789abcdefREAD"] = "reader"
    monkeypatch.setenv("HF_TOKEN", "hf_ReadOnly0123456789abcdefREAD")
    with pytest.raises(HubAuthError, match="403 Forbidden.*write access") as raised:
        upload_folder(make_folder(tmp_path), "my-org/emo-test")
    assert "hf_ReadOnly" not in str(raised.value)
    assert hub.repos == {}


def test_a_failed_commit_leaves_the_repo_as_it_was(hub, tmp_path: Path):
    folder = make_folder(tmp_path)
    upload_folder(folder, "my-org/emo-test")
    before = hub.files("my-org/emo-test")
    (folder / "config.json").write_text("{}")
    (folder / "new.txt").write_text("new")
    hub.fail_next_commit = True
    with pytest.raises(HubUploadError, match="500"):
        upload_folder(folder, "my-org/emo-test")
    assert hub.files("my-org/emo-test") == before


def test_broken_card_metadata_is_refused_before_any_file_is_sent(hub, tmp_path: Path):
    folder = make_folder(tmp_path)
    (folder / "README.md").write_text("---\nlicense: [unclosed\n---\n# card\n")
    with pytest.raises(ValueError, match="metadata"):
        upload_folder(folder, "my-org/emo-test")
    assert set(hub.files("my-org/emo-test")) == {".gitattributes"}
    assert not [c for c in hub.requests if "/commit/" in c[1] or "/preupload/" in c[1]]


@pytest.mark.parametrize("repo_id", ["noslash", "a/b/c", "org/bad name", "org/--x", "/name", "org/", "org/name.git",
                                     "org/" + "x" * 97, ""])
def test_malformed_repo_id_is_refused_up_front(hub, tmp_path: Path, repo_id: str):
    with pytest.raises(ValueError, match="my-org/emo-minilm"):
        upload_folder(make_folder(tmp_path), repo_id)
    assert hub.requests == []


def test_missing_or_empty_folder(hub, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        upload_folder(tmp_path / "nope", "my-org/emo-test")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no files"):
        upload_folder(tmp_path / "empty", "my-org/emo-test")
    assert hub.requests == []


def test_token_is_in_no_uploaded_file_and_no_log(hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture):
    # HF_DEBUG makes huggingface_hub log every request as a curl command (it hides the Authorization header).
    monkeypatch.setattr(constants, "HF_DEBUG", True)
    caplog.set_level(logging.DEBUG)
    folder = make_folder(tmp_path)
    upload_folder(folder, "my-org/emo-test")
    upload_folder(folder, "my-org/emo-data", repo_type="dataset", revision="dev")
    monkeypatch.setenv("HF_TOKEN", "hf_WrongToken0123456789abcdefWRONG")
    with pytest.raises(HubAuthError) as raised:
        upload_folder(folder, "my-org/other")
    assert any("Request" in record.getMessage() for record in caplog.records)  # the debug log did capture requests
    out, err = capfd.readouterr()
    stored = b"".join(content for repo in hub.repos.values() for commit in repo.commits.values()
                      for content in commit.files.values())
    logs = caplog.text + out + err + "".join(traceback.format_exception(raised.value))
    for token in (TOKEN, "hf_WrongToken0123456789abcdefWRONG"):
        assert token not in logs
        assert token.encode() not in stored
