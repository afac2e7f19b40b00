"""A small Hugging Face Hub stand-in for tests: an HTTP server on 127.0.0.1 that stores repositories in memory.

TEST STAND-IN ONLY. No real Hub is reachable from the machines that run these tests, so the tests point `HF_ENDPOINT`
at this server and run the real huggingface_hub client code against it (the project's upload and download code is the
real huggingface_hub calls). It implements just the endpoints that huggingface_hub 1.33 calls for `create_repo`,
`create_branch`, `create_commit` / `upload_folder` (regular files only: "preupload" answers "regular" for every file,
so no LFS or Xet transfer is needed), `repo_info` / `model_info` / `dataset_info`, `list_repo_tree` /
`list_repo_files`, `list_repo_refs`, `whoami`, the README.md metadata check, and file downloads (`hf_hub_download`,
`snapshot_download`, transformers' `from_pretrained`) through HEAD/GET on `/{repo}/resolve/{revision}/{path}`.
The request/response shapes were read from the installed huggingface_hub sources (hf_api.py, _commit_api.py,
file_download.py, utils/_http.py). Model and dataset repositories (`/api/datasets/...`, `/datasets/...`) both work.

Auth: every write needs `Authorization: Bearer <token>` with a token in `tokens`; a request that carries an unknown
token gets 401 "Invalid credentials in Authorization header" (as the Hub does); reading a public repo needs no token.

    server = HubServer(tokens={"hf_test_token": "tester"})
    server.start()                  # picks a free port; server.url == "http://127.0.0.1:PORT"
    ...                              # HF_ENDPOINT=server.url, HF_TOKEN=hf_test_token
    server.stop()

In tests, use the `hub` fixture (import it into the test module: `from hub_server import hub`): it starts a server,
points HF_ENDPOINT / HF_TOKEN / HF_HOME of this process at it and at a temporary folder, and stops it afterwards.
`subprocess_env(server, tmp_path)` gives the environment for a fresh Python process that downloads from it (set
before huggingface_hub is imported there, as huggingface_hub reads HF_ENDPOINT once, at import).
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

from pathlib import Path

import pytest
import yaml

TOKEN = "hf_StandInToken0123456789abcdefXYZ"  # the default valid token of the stand-in
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_sha1(content: bytes) -> str:
    """The git object id of a blob (what the Hub returns as a regular file's ETag and `oid`)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Commit:
    oid: str
    files: dict[str, bytes]
    message: str
    parent: str | None
    date: float = field(default_factory=time.time)


@dataclass
class Repo:
    repo_type: str  # "model" | "dataset"
    repo_id: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit oid
    commits: dict[str, Commit] = field(default_factory=dict)


class HubError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        body: dict | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}
        self.body = body or {}


class HubServer:
    """In-memory Hub stand-in; see the module docstring. `requests` logs (method, path, status) of every call."""

    def __init__(self, tokens: dict[str, str] | None = None, read_only_tokens: dict[str, str] | None = None,
                 host: str = "127.0.0.1", port: int = 0):
        self.tokens = dict(tokens or {TOKEN: "tester"})  # token -> user name (read and write)
        self.read_only_tokens = dict(read_only_tokens or {})  # token -> user name (writes get 403)
        self.fail_next_commit = False  # tests set it to make the next /commit answer 500
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str, int]] = []
        self.lock = threading.RLock()
        self._httpd = ThreadingHTTPServer((host, port), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "HubServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-stand-in", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # ------------------------------------------------------------------ state helpers (also used by tests)

    def repo(self, repo_id: str, repo_type: str = "model") -> Repo | None:
        return self.repos.get((repo_type, repo_id))

    def files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict[str, bytes]:
        """The files of `repo_id` at `revision` ({} when the repo does not exist)."""
        repo = self.repo(repo_id, repo_type)
        if repo is None:
            return {}
        return dict(repo.commits[self._resolve(repo, revision)].files)

    def _new_commit(self, repo: Repo, files: dict[str, bytes], message: str, parent: str | None) -> Commit:
        seed = f"{repo.repo_type}/{repo.repo_id}/{parent}/{message}/{time.time_ns()}/{len(repo.commits)}"
        commit = Commit(hashlib.sha1(seed.encode()).hexdigest(), files, message, parent)
        repo.commits[commit.oid] = commit
        return commit

    def _resolve(self, repo: Repo, revision: str) -> str:
        if revision in repo.branches:
            return repo.branches[revision]
        if revision in repo.commits:
            return revision
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")


def _http_date(timestamp: float) -> str:
    return email.utils.formatdate(timestamp, usegmt=True)


def _make_handler(server: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, every response carries Content-Length
        server_version = "HubStandIn/1.0"

        def log_message(self, format: str, *args) -> None:  # keep pytest output quiet
            pass

        # -------------------------------------------------------------- plumbing

        def _body(self) -> bytes:
            return self._request_body

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().strip().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        break
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False):
            self.send_response(status)
            headers = {"Content-Type": "application/json", **(headers or {})}
            headers.setdefault("Content-Length", str(len(body)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            if not head and body:
                self.wfile.write(body)
            with server.lock:
                server.requests.append((self.command, self.path, status))

        def _json(self, status: int, data, headers: dict[str, str] | None = None):
            self._send(status, json.dumps(data).encode(), headers)

        def _error(self, error: HubError):
            headers = {"X-Error-Message": error.message, **error.headers}
            if error.code:
                headers["X-Error-Code"] = error.code
            body = json.dumps({"error": error.message, **error.body}).encode()
            self._send(error.status, body, headers, head=self.command == "HEAD")

        def _user(self) -> str | None:
            """The user of the request's token; None without a token; 401 for an unknown one."""
            authorization = self.headers.get("Authorization")
            if authorization is None:
                return None
            scheme, _, token = authorization.partition(" ")
            users = {**server.read_only_tokens, **server.tokens}
            if scheme.lower() != "bearer" or token not in users:
                raise HubError(401, "Invalid credentials in Authorization header")
            return users[token]

        def _need_user(self) -> str:
            """The user of a request that writes: 401 without a token, 403 for a read-only token."""
            user = self._user()
            if user is None:
                raise HubError(401, "You must be authenticated to access this resource (pass a token)")
            token = self.headers.get("Authorization", "").partition(" ")[2]
            if token in server.read_only_tokens:
                raise HubError(403, "You don't have the rights to write to this namespace")
            return user

        def _repo(self, repo_type: str, repo_id: str, *, write: bool = False) -> Repo:
            user = self._need_user() if write else self._user()
            repo = server.repo(repo_id, repo_type)
            if repo is None or (repo.private and user is None):
                # The Hub answers 401 + RepoNotFound for both "missing" and "private without auth".
                raise HubError(401, "Repository not found", "RepoNotFound")
            return repo

        def _dispatch(self):
            url = urlsplit(self.path)
            # Split on the raw path so that an encoded "/" inside a revision (quote(rev, safe="")) stays one segment.
            parts = [unquote(part) for part in url.path.split("/")[1:]]
            query = {key: values[-1] for key, values in parse_qs(url.query).items()}
            # Read the whole body first, even for requests refused below: the connection is reused (keep-alive).
            self._request_body = self._read_body()
            try:
                with server.lock:
                    self._route(parts, query)
            except HubError as error:
                self._error(error)

        do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _dispatch

        # -------------------------------------------------------------- routes

        def _route(self, parts: list[str], query: dict[str, str]):
            method = self.command
            if parts[:1] == ["api"]:
                rest = parts[1:]
                if method == "POST" and rest == ["repos", "create"]:
                    return self._create_repo()
                if method == "POST" and rest == ["validate-yaml"]:
                    return self._validate_yaml()
                if method == "GET" and rest == ["whoami-v2"]:
                    user = self._need_user()
                    return self._json(200, {"type": "user", "name": user, "auth": {"type": "access_token"}})
                if len(rest) >= 3 and rest[0] in ("models", "datasets"):
                    repo_type = rest[0][:-1]
                    repo_id = f"{rest[1]}/{rest[2]}"
                    return self._repo_api(method, repo_type, repo_id, rest[3:], query)
                raise HubError(404, f"Stand-in Hub: no route for {method} {self.path}")
            # File downloads: /{ns}/{name}/resolve/{rev}/{path} and /datasets/{ns}/{name}/resolve/{rev}/{path}
            repo_type = "model"
            if parts[:1] == ["datasets"]:
                repo_type, parts = "dataset", parts[1:]
            if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
                return self._resolve_file(repo_type, f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
            raise HubError(404, f"Stand-in Hub: no route for {method} {self.path}")

        def _create_repo(self):
            user = self._need_user()
            payload = json.loads(self._body() or b"{}")
            repo_type = payload.get("type") or "model"
            if repo_type not in ("model", "dataset"):
                raise HubError(400, f"Stand-in Hub: repo type {repo_type!r} is not supported")
            repo_id = f"{payload.get('organization') or user}/{payload['name']}"
            prefix = "" if repo_type == "model" else "datasets/"
            if server.repo(repo_id, repo_type) is not None:
                # create_repo(exist_ok=True) reads the url from this 409 answer, as from the Hub's.
                raise HubError(409, "You already created this repo", body={"url": f"{server.url}/{prefix}{repo_id}"})
            private = payload.get("visibility") == "private" or bool(payload.get("private"))
            repo = Repo(repo_type, repo_id, private)
            initial = server._new_commit(repo, {".gitattributes": GITATTRIBUTES}, "initial commit", None)
            repo.branches["main"] = initial.oid
            server.repos[(repo_type, repo_id)] = repo
            self._json(200, {"url": f"{server.url}/{prefix}{repo_id}", "name": repo_id, "id": repo_id})

        def _validate_yaml(self):
            """Checks the YAML block at the top of a README.md parses to a mapping (the Hub checks much more)."""
            self._user()
            content = json.loads(self._body() or b"{}").get("content", "")
            errors = []
            if content.startswith("---"):
                block = content.split("---", 2)[1] if content.count("---") >= 2 else None
                try:
                    data = yaml.safe_load(block) if block is not None else None
                    if block is None or not isinstance(data, dict):
                        errors.append({"message": "metadata must be a YAML mapping between '---' lines"})
                except yaml.YAMLError as error:
                    errors.append({"message": f"invalid YAML: {error}"})
            if errors:
                return self._json(400, {"errors": errors, "warnings": []})
            self._json(200, {"errors": [], "warnings": []})

        def _repo_api(self, method: str, repo_type: str, repo_id: str, rest: list[str], query: dict[str, str]):
            if method == "GET" and (rest == [] or rest[:1] == ["revision"]):
                repo = self._repo(repo_type, repo_id)
                oid = server._resolve(repo, rest[1] if len(rest) > 1 else "main")
                return self._json(200, self._info(repo, oid))
            if method == "GET" and rest[:1] == ["tree"] and len(rest) >= 2:
                repo = self._repo(repo_type, repo_id)
                commit = repo.commits[server._resolve(repo, rest[1])]
                return self._tree(commit, "/".join(rest[2:]), query.get("recursive", "").lower() == "true")
            if method == "GET" and rest == ["refs"]:
                repo = self._repo(repo_type, repo_id)
                branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": oid} for b, oid in repo.branches.items()]
                return self._json(200, {"branches": branches, "tags": [], "converts": []})
            if method == "POST" and rest[:1] == ["branch"] and len(rest) == 2:
                repo = self._repo(repo_type, repo_id, write=True)
                payload = json.loads(self._body() or b"{}")
                if rest[1] in repo.branches:
                    raise HubError(409, f"Reference {rest[1]} already exists")
                repo.branches[rest[1]] = server._resolve(repo, payload.get("startingPoint") or "main")
                return self._json(200, {})
            if method == "POST" and rest[:1] == ["preupload"] and len(rest) == 2:
                repo = self._repo(repo_type, repo_id, write=True)
                files = repo.commits[server._resolve(repo, rest[1])].files
                payload = json.loads(self._body() or b"{}")
                answer = [
                    {
                        "path": item["path"],
                        "uploadMode": "regular",  # the stand-in stores everything as regular git blobs
                        "shouldIgnore": False,
                        "oid": git_blob_sha1(files[item["path"]]) if item["path"] in files else None,
                    }
                    for item in payload.get("files", [])
                ]
                return self._json(200, {"files": answer, "commitOid": repo.branches.get(rest[1])})
            if method == "POST" and rest[:1] == ["commit"] and len(rest) == 2:
                return self._commit(self._repo(repo_type, repo_id, write=True), rest[1], query)
            raise HubError(404, f"Stand-in Hub: no route for {method} {self.path}")

        def _info(self, repo: Repo, oid: str) -> dict:
            commit = repo.commits[oid]
            date = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(commit.date))
            siblings = [{"rfilename": path} for path in sorted(commit.files)]
            return {
                "id": repo.repo_id,
                "author": repo.repo_id.split("/")[0],
                "sha": oid,
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "lastModified": date,
                "createdAt": date,
                "tags": [],
                "siblings": siblings,
            }

        def _tree(self, commit: Commit, folder: str, recursive: bool):
            prefix = f"{folder.strip('/')}/" if folder.strip("/") else ""
            entries: dict[str, dict] = {}
            for path, content in sorted(commit.files.items()):
                if not path.startswith(prefix):
                    continue
                rest = path[len(prefix) :].split("/")
                # folders on the way (all of them when recursive, the first level otherwise)
                for depth in range(1, len(rest) if recursive else min(2, len(rest))):
                    sub = prefix + "/".join(rest[:depth])
                    entries.setdefault(sub, {"type": "directory", "oid": git_blob_sha1(sub.encode()), "size": 0, "path": sub})
                if recursive or len(rest) == 1:
                    entries[path] = {"type": "file", "oid": git_blob_sha1(content), "size": len(content), "path": path}
            if prefix and not entries:
                raise HubError(404, f"Entry not found: {folder}", "EntryNotFound")
            self._json(200, list(entries.values()))

        def _commit(self, repo: Repo, revision: str, query: dict[str, str]):
            if server.fail_next_commit:
                server.fail_next_commit = False
                raise HubError(500, "Stand-in Hub: commit failed on purpose (fail_next_commit)")
            if query.get("create_pr"):
                raise HubError(400, "Stand-in Hub: pull requests are not supported")
            if revision not in repo.branches:
                raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            if self.headers.get("Content-Type", "").split(";")[0] != "application/x-ndjson":
                raise HubError(400, "Stand-in Hub: the commit payload must be application/x-ndjson")
            lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
            if not lines or lines[0].get("key") != "header":
                raise HubError(400, "commit payload must start with a header line")
            header = lines[0]["value"]
            parent = repo.branches[revision]
            if header.get("parentCommit") and not parent.startswith(header["parentCommit"]):
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(repo.commits[parent].files)
            for line in lines[1:]:  # validate every operation before changing anything: one commit or nothing
                key, value = line.get("key"), line.get("value", {})
                if key == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    folder = value["path"].rstrip("/") + "/"
                    files = {path: data for path, data in files.items() if not path.startswith(folder)}
                else:
                    raise HubError(400, f"Stand-in Hub: commit operation {key!r} is not supported (regular files only)")
            commit = server._new_commit(repo, files, header.get("summary", ""), parent)
            repo.branches[revision] = commit.oid
            prefix = "" if repo.repo_type == "model" else "datasets/"
            url = f"{server.url}/{prefix}{repo.repo_id}/commit/{commit.oid}"
            self._json(200, {"success": True, "commitOid": commit.oid, "commitUrl": url, "pullRequestUrl": None})

        def _resolve_file(self, repo_type: str, repo_id: str, revision: str, path: str):
            repo = self._repo(repo_type, repo_id)
            oid = server._resolve(repo, revision)
            content = repo.commits[oid].files.get(path)
            if content is None:
                raise HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": oid})
            headers = {
                "Content-Type": "application/octet-stream",
                "ETag": f'"{git_blob_sha1(content)}"',
                "X-Repo-Commit": oid,
                "Accept-Ranges": "bytes",
                "Last-Modified": _http_date(repo.commits[oid].date),
                "Content-Disposition": f"inline; filename*=UTF-8''{quote(path.rsplit('/', 1)[-1])}; "
                f'filename="{path.rsplit("/", 1)[-1]}"',
            }
            status, body = 200, content
            byte_range = self.headers.get("Range", "")
            if self.command == "GET" and byte_range.startswith("bytes="):
                start_text, _, end_text = byte_range[len("bytes=") :].partition("-")
                start = int(start_text or 0)
                end = int(end_text) if end_text else len(content) - 1
                status, body = 206, content[start : end + 1]
                headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
            headers["Content-Length"] = str(len(body))
            self._send(status, body, headers, head=self.command == "HEAD")

    return Handler


def subprocess_env(server: HubServer, tmp_path: Path, *, token: str | None = None) -> dict[str, str]:
    """Environment for a fresh process that talks to `server` (no token unless given; own empty HF cache)."""
    import os

    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGING"))}
    env.update({"HF_ENDPOINT": server.url, "HF_HOME": str(tmp_path / "hf_home_subprocess"),
                "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent.parent),
                                               env.get("PYTHONPATH", "")]).rstrip(os.pathsep)})
    if token:
        env["HF_TOKEN"] = token
    return env


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A running stand-in Hub; this process's HF_ENDPOINT / HF_TOKEN point at it, HF_HOME at a temporary folder."""
    from huggingface_hub import constants

    server = HubServer(tokens={TOKEN: "tester"}).start()
    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    # Read once at import by huggingface_hub: a token saved by `hf auth login` on this machine must not leak in.
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    try:
        yield server
    finally:
        server.stop()
