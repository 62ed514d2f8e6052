"""A Hugging Face Hub-compatible loopback server for tests, driven by the real huggingface_hub client.

Stdlib only (plus pyyaml for the README check): ``ThreadingHTTPServer`` on 127.0.0.1, an in-memory
git-like store (commits keep their full file map, so every old revision stays readable), and the
endpoints huggingface_hub 2.4 uses for ``create_repo``, ``create_commit``, ``hf_hub_download``,
``snapshot_download``, ``repo_info``, ``list_repo_tree``, ``get_paths_info``, ``list_repo_refs``,
``list_repo_commits``, ``create_branch``, ``whoami`` and Range reads of files.

Auth mirrors the Hub: a wrong token is a 401 "Invalid credentials"; writes need a valid token;
private repos answer 404 ``RepoNotFound`` to anyone without the token.

Fault injection: ``server.inject("commit", status=500, times=1)``, ``inject(..., reset=True)``
(close the connection without a response), ``inject(..., delay=2.0)`` (sleep, then answer normally),
``inject(..., truncate=True)`` (serve the request, send the first half of the answer, then reset) and
``inject(..., lost=True)`` (serve the request, so a commit lands, then reset: "applied, response lost").
``server.idle()`` waits until no request is being served (a delayed one finishes first).
Endpoint names: create, delete, validate-yaml, preupload, commit, revision, tree, paths-info, refs,
branch, commits, settings, whoami, resolve.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.parquet filter=lfs diff=lfs merge=lfs -text\n"
_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}


def git_blob_sha1(data: bytes) -> str:
    """The git blob id of ``data`` (what the Hub sends as ETag/oid for regular files)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    sha: str
    parent: str | None
    message: str
    files: dict[str, bytes]
    timestamp: float


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def resolve(self, rev: str) -> Commit | None:
        """A branch, tag or full commit sha -> the commit (None when unknown)."""
        sha = self.branches.get(rev) or self.tags.get(rev) or (rev if rev in self.commits else None)
        return self.commits.get(sha) if sha else None


@dataclass
class Fault:
    endpoint: str
    method: str | None
    status: int | None
    reset: bool
    delay: float
    times: int
    truncate: bool = False
    lost: bool = False
    skip: int = 0

    @property
    def kind(self) -> str:
        """``delay N s``, reset, truncate, lost or the status code."""
        if self.delay:
            return f"delay {self.delay:g} s"
        for name in ("reset", "truncate", "lost"):
            if getattr(self, name):
                return name
        return str(self.status)


class _Fail(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class HubServer:
    """In-memory Hub. ``start()`` binds 127.0.0.1:0; ``url`` is the endpoint for HF_ENDPOINT."""

    def __init__(self, *, token: str = "hf_testtoken0123456789abcdefghijklmnop", user: str = "tester"):
        self.token, self.user = token, user
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[dict] = []
        self._faults: list[Fault] = []
        self.faults_served: list[tuple[str, str]] = []  # (endpoint, kind) of every fault that fired
        self._active = 0
        self._lock = threading.RLock()
        self._counter = 0
        self._salt = os.urandom(8).hex()  # commit shas differ between server instances (the HF cache keys on them)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> HubServer:
        """Serve on a free loopback port in a daemon thread."""
        server = self

        class Handler(_Handler):
            hub = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hubserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test helpers ------------------------------------------------------------------------
    def inject(
        self,
        endpoint: str,
        *,
        status: int | None = None,
        times: int = 1,
        reset: bool = False,
        delay: float = 0.0,
        method: str | None = None,
        truncate: bool = False,
        lost: bool = False,
        skip: int = 0,
    ) -> None:
        """Make the next ``times`` requests to ``endpoint`` fail (status), drop (reset), stall (delay), answer
        half (truncate) or be served with the answer dropped (lost); the first ``skip`` of them are served normally."""
        if status is None and not reset and not delay and not truncate and not lost:
            raise ValueError("inject needs status=, reset=True, delay=, truncate=True or lost=True")
        with self._lock:
            self._faults.append(Fault(endpoint, method, status, reset, delay, times, truncate, lost, skip))

    def idle(self, timeout: float = 30.0) -> bool:
        """Wait until no request is being served; False if that took longer than ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._active == 0:
                    return True
            time.sleep(0.01)
        return False

    def clear_faults(self) -> None:
        """Forget every pending fault."""
        with self._lock:
            self._faults.clear()

    def repo(self, repo_id: str, repo_type: str = "dataset") -> Repo:
        """The stored repo (KeyError if absent)."""
        return self.repos[(repo_type, repo_id)]

    def files(self, repo_id: str, rev: str = "main", repo_type: str = "dataset") -> dict[str, bytes]:
        """The file map of a revision."""
        commit = self.repo(repo_id, repo_type).resolve(rev)
        if commit is None:
            raise KeyError(rev)
        return dict(commit.files)

    def head(self, repo_id: str, branch: str = "main", repo_type: str = "dataset") -> str:
        """The commit sha a branch points at."""
        return self.repo(repo_id, repo_type).branches[branch]

    def put_files(
        self,
        repo_id: str,
        files: dict[str, bytes],
        *,
        repo_type: str = "dataset",
        private: bool = False,
        message: str = "seed",
    ) -> str:
        """Create (if needed) and commit files directly, bypassing HTTP. Returns the new sha."""
        with self._lock:
            repo = self.repos.get((repo_type, repo_id)) or self._create(repo_type, repo_id, private)
            parent = repo.commits[repo.branches["main"]]
            return self._commit(repo, "main", {**parent.files, **files}, message)

    # -- store -------------------------------------------------------------------------------
    def _create(self, repo_type: str, repo_id: str, private: bool) -> Repo:
        repo = Repo(repo_type, repo_id, private)
        self.repos[(repo_type, repo_id)] = repo
        self._commit(repo, "main", {".gitattributes": GITATTRIBUTES}, "initial commit")
        return repo

    def _commit(self, repo: Repo, branch: str, files: dict[str, bytes], message: str) -> str:
        self._counter += 1
        parent = repo.branches.get(branch)
        sha = hashlib.sha1(f"{self._salt}:{repo.repo_id}:{self._counter}:{parent}:{message}".encode()).hexdigest()
        repo.commits[sha] = Commit(sha, parent, message, files, time.time())
        repo.branches[branch] = sha
        return sha

    def _take_fault(self, endpoint: str, method: str) -> Fault | None:
        with self._lock:
            for f in self._faults:
                if f.endpoint == endpoint and (f.method is None or f.method == method) and f.times > 0:
                    if f.skip > 0:
                        f.skip -= 1
                        return None
                    f.times -= 1
                    if f.times == 0:
                        self._faults.remove(f)
                    return f
        return None


_API = re.compile(
    r"^/api/(models|datasets|spaces)/([^/]+)/([^/]+)(?:/(revision|tree|paths-info|preupload|commit|refs|branch|commits|settings)(?:/(.*))?)?$"
)
_RESOLVE = re.compile(r"^/(?:(datasets|spaces)/)?([^/]+)/([^/]+)/resolve/([^/]+)/(.+)$")


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # silence stderr logging
        pass

    # -- plumbing ----------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _body(self) -> bytes:
        if self._cached_body is None:
            n = int(self.headers.get("Content-Length") or 0)
            self._cached_body = self.rfile.read(n) if n else b""
        return self._cached_body

    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        self._log["status"] = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, status: int, obj: object, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers)

    def _auth(self) -> bool:
        """True with the valid token, False with none; a wrong token raises 401."""
        value = self.headers.get("Authorization") or ""
        if not value:
            return False
        if value != f"Bearer {self.hub.token}":
            raise _Fail(401, "Invalid credentials in Authorization header")
        return True

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        self._cached_body: bytes | None = None  # one handler serves every request of a keep-alive connection
        self._body()
        endpoint, handler, args = self._route(method, path)
        self._log = {
            "method": method,
            "path": path,
            "endpoint": endpoint,
            "range": self.headers.get("Range"),
            "auth": bool(self.headers.get("Authorization")),
            "status": None,
        }
        self.hub.requests.append(self._log)
        fault = self.hub._take_fault(endpoint, method) if endpoint else None
        with self.hub._lock:
            self.hub._active += 1
        try:
            self._serve(method, path, query, endpoint, handler, args, fault)
        finally:
            with self.hub._lock:
                self.hub._active -= 1

    def _reset(self) -> None:
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def _serve(self, method, path, query, endpoint, handler, args, fault: Fault | None) -> None:
        real = self.wfile
        try:
            if fault is not None:
                self.hub.faults_served.append((endpoint, fault.kind))
                if fault.delay:
                    time.sleep(fault.delay)
                if fault.reset:
                    return self._reset()
                if fault.status is not None:
                    raise _Fail(fault.status, f"injected fault on {endpoint}")
                if fault.truncate or fault.lost:  # serve into a buffer, then send half of it or nothing
                    self.wfile = io.BytesIO()
                    try:
                        if handler is not None:
                            handler(method, query, *args)
                    except _Fail:
                        pass
                    answer = self.wfile.getvalue()
                    self.wfile = real
                    if fault.truncate and answer:
                        real.write(answer[: len(answer) // 2])
                        real.flush()
                    return self._reset()
            if handler is None:
                raise _Fail(404, f"no route for {method} {path}")
            handler(method, query, *args)
        except _Fail as e:
            headers = {"X-Error-Message": e.message}
            if e.code:
                headers["X-Error-Code"] = e.code
            try:
                self._json(e.status, {"error": e.message}, headers)
            except OSError:  # the client gave up (timeout) before the answer
                self.close_connection = True
        except OSError:
            self.close_connection = True

    def _route(self, method: str, path: str):
        if path == "/api/whoami-v2":
            return "whoami", self._whoami, ()
        if path == "/api/repos/create" and method == "POST":
            return "create", self._create_repo, ()
        if path == "/api/repos/delete" and method == "POST":
            return "delete", self._delete_repo, ()
        if path == "/api/validate-yaml" and method == "POST":
            return "validate-yaml", self._validate_yaml, ()
        m = _API.match(path)
        if m:
            kind, ns, name, action, rest = m.groups()
            repo_id = f"{unquote(ns)}/{unquote(name)}"
            action = action or "revision"
            rest = unquote(rest) if rest is not None else None
            return action, getattr(self, "_api_" + action.replace("-", "_")), (_TYPES[kind], repo_id, rest)
        m = _RESOLVE.match(path)
        if m and method in ("GET", "HEAD"):
            kind, ns, name, rev, file = m.groups()
            return (
                "resolve",
                self._resolve,
                (_TYPES.get(kind or "models", "model"), f"{ns}/{name}", unquote(rev), unquote(file)),
            )
        return None, None, ()

    def _repo(self, repo_type: str, repo_id: str, *, write: bool = False) -> Repo:
        authed = self._auth()
        if write and not authed:
            raise _Fail(401, "You must be authenticated to write to this repository")
        repo = self.hub.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not authed):
            raise _Fail(404, "Repository not found", "RepoNotFound")
        return repo

    @staticmethod
    def _commit_of(repo: Repo, rev: str | None) -> Commit:
        commit = repo.resolve(rev or "main")
        if commit is None:
            raise _Fail(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return commit

    # -- endpoints ---------------------------------------------------------------------------
    def _whoami(self, method: str, query: dict) -> None:
        if not self._auth():
            raise _Fail(401, "Invalid credentials in Authorization header")
        self._json(
            200,
            {
                "type": "user",
                "name": self.hub.user,
                "fullname": "Test User",
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}},
            },
        )

    def _create_repo(self, method: str, query: dict) -> None:
        if not self._auth():
            raise _Fail(401, "You must be authenticated to create a repository")
        body = json.loads(self._body() or b"{}")
        repo_type = body.get("type") or "model"
        name, org = body.get("name"), body.get("organization")
        if not name or not re.fullmatch(r"[\w.-]{1,96}", name) or (org and not re.fullmatch(r"[\w.-]{1,96}", org)):
            raise _Fail(400, "Invalid repo name")
        repo_id = f"{org or self.hub.user}/{name}"
        prefix = "" if repo_type == "model" else f"/{repo_type}s"
        url = f"{self.hub.url}{prefix}/{repo_id}"
        private = bool(body.get("private")) or body.get("visibility") == "private"
        with self.hub._lock:
            if (repo_type, repo_id) in self.hub.repos:
                return self._json(409, {"error": "You already created this dataset repo", "url": url})
            self.hub._create(repo_type, repo_id, private)
        self._json(200, {"url": url, "name": repo_id})

    def _delete_repo(self, method: str, query: dict) -> None:
        body = json.loads(self._body() or b"{}")
        repo_id = f"{body.get('organization') or self.hub.user}/{body.get('name')}"
        self._repo(body.get("type") or "model", repo_id, write=True)
        with self.hub._lock:
            del self.hub.repos[(body.get("type") or "model", repo_id)]
        self._json(200, {})

    def _validate_yaml(self, method: str, query: dict) -> None:
        content = json.loads(self._body() or b"{}").get("content", "")
        m = re.match(r"^---\s*\n(.*?)\n---\s*$", content, re.DOTALL | re.MULTILINE)
        errors = []
        if m:
            try:
                meta = yaml.safe_load(m.group(1))
            except yaml.YAMLError as e:
                errors.append(f"YAML parse error: {e}")
            else:
                if meta is not None and not isinstance(meta, dict):
                    errors.append("metadata must be a mapping")
                elif meta:
                    for key in ("tags", "task_categories", "size_categories", "configs"):
                        if key in meta and not isinstance(meta[key], list):
                            errors.append(f'"{key}" must be an array')
                    if "license" in meta and not isinstance(meta["license"], (str, list)):
                        errors.append('"license" must be a string')
        if errors:
            return self._json(400, {"error": "; ".join(errors), "errors": [{"message": x} for x in errors]})
        self._json(200, {"errors": [], "warnings": []})

    def _api_revision(self, method: str, query: dict, repo_type: str, repo_id: str, rev: str | None) -> None:
        repo = self._repo(repo_type, repo_id)
        commit = self._commit_of(repo, rev)
        self._json(
            200,
            {
                "id": repo_id,
                "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24],
                "sha": commit.sha,
                "private": repo.private,
                "disabled": False,
                "gated": False,
                "author": repo_id.split("/")[0],
                "lastModified": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(commit.timestamp)),
                "siblings": [{"rfilename": p} for p in sorted(commit.files)],
                "tags": [],
                "downloads": 0,
                "likes": 0,
            },
        )

    @staticmethod
    def _entries(commit: Commit, paths: list[str] | None, prefix: str, recursive: bool) -> list[dict]:
        out: dict[str, dict] = {}
        prefix = prefix.strip("/")
        for p, data in sorted(commit.files.items()):
            if paths is not None:
                if p in paths:
                    out[p] = {"type": "file", "path": p, "size": len(data), "oid": git_blob_sha1(data)}
                continue
            if prefix and not p.startswith(prefix + "/"):
                continue
            rel = p[len(prefix) + 1 :] if prefix else p
            parts = rel.split("/")
            if len(parts) > 1:
                depth = len(parts) - 1 if recursive else 1
                for i in range(1, depth + 1):
                    d = "/".join(([prefix] if prefix else []) + parts[:i])
                    out.setdefault(
                        d, {"type": "directory", "path": d, "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0}
                    )
                if not recursive:
                    continue
            out[p] = {"type": "file", "path": p, "size": len(data), "oid": git_blob_sha1(data)}
        if paths is not None:
            for d in paths:
                if d not in out and any(p.startswith(d.rstrip("/") + "/") for p in commit.files):
                    out[d] = {"type": "directory", "path": d, "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0}
        return list(out.values())

    def _api_tree(self, method: str, query: dict, repo_type: str, repo_id: str, rest: str | None) -> None:
        repo = self._repo(repo_type, repo_id)
        rev, _, sub = (rest or "main").partition("/")
        commit = self._commit_of(repo, rev)
        if sub and sub not in commit.files and not any(p.startswith(sub.rstrip("/") + "/") for p in commit.files):
            raise _Fail(404, f"{sub} does not exist", "EntryNotFound")
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        self._json(200, self._entries(commit, None, sub, recursive))

    def _api_paths_info(self, method: str, query: dict, repo_type: str, repo_id: str, rev: str | None) -> None:
        repo = self._repo(repo_type, repo_id)
        commit = self._commit_of(repo, rev)
        ctype = self.headers.get("Content-Type") or ""
        form = json.loads(self._body()) if "json" in ctype else parse_qs(self._body().decode())
        paths = form.get("paths") or []
        self._json(200, self._entries(commit, [paths] if isinstance(paths, str) else list(paths), "", True))

    def _api_refs(self, method: str, query: dict, repo_type: str, repo_id: str, rest: str | None) -> None:
        repo = self._repo(repo_type, repo_id)
        self._json(
            200,
            {
                "branches": [
                    {"name": b, "ref": f"refs/heads/{b}", "targetCommit": s} for b, s in repo.branches.items()
                ],
                "tags": [{"name": t, "ref": f"refs/tags/{t}", "targetCommit": s} for t, s in repo.tags.items()],
                "converts": [],
            },
        )

    def _api_branch(self, method: str, query: dict, repo_type: str, repo_id: str, branch: str | None) -> None:
        repo = self._repo(repo_type, repo_id, write=True)
        body = json.loads(self._body() or b"{}")
        if not branch:
            raise _Fail(400, "branch name required")
        start = self._commit_of(repo, body.get("startingPoint") or "main")
        with self.hub._lock:
            if branch in repo.branches:
                return self._json(409, {"error": f"Reference refs/heads/{branch} already exists"})
            repo.branches[branch] = start.sha
        self._json(200, {})

    def _api_settings(self, method: str, query: dict, repo_type: str, repo_id: str, rest: str | None) -> None:
        repo = self._repo(repo_type, repo_id, write=True)
        body = json.loads(self._body() or b"{}")
        if "visibility" in body:
            repo.private = body["visibility"] == "private"
        elif "private" in body:
            repo.private = bool(body["private"])
        self._json(200, {})

    def _api_commits(self, method: str, query: dict, repo_type: str, repo_id: str, rev: str | None) -> None:
        repo = self._repo(repo_type, repo_id)
        commit: Commit | None = self._commit_of(repo, rev)
        history = []
        while commit is not None:
            history.append(
                {
                    "id": commit.sha,
                    "title": commit.message,
                    "message": "",
                    "authors": [{"user": self.hub.user}],
                    "date": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(commit.timestamp)),
                }
            )
            commit = repo.commits.get(commit.parent) if commit.parent else None
        self._json(200, history)

    def _api_preupload(self, method: str, query: dict, repo_type: str, repo_id: str, rev: str | None) -> None:
        repo = self._repo(repo_type, repo_id, write=True)
        current = repo.resolve(rev or "main")
        files = json.loads(self._body() or b"{}").get("files", [])
        answer = []
        for f in files:
            old = current.files.get(f["path"]) if current else None
            answer.append(
                {
                    "path": f["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": git_blob_sha1(old) if old is not None else None,
                }
            )
        self._json(200, {"files": answer, "commitOid": current.sha if current else None})

    def _api_commit(self, method: str, query: dict, repo_type: str, repo_id: str, rev: str | None) -> None:
        repo = self._repo(repo_type, repo_id, write=True)
        branch = rev or "main"
        try:
            lines = [json.loads(x) for x in self._body().decode().splitlines() if x.strip()]
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise _Fail(400, f"invalid NDJSON payload: {e}") from e
        if not lines or lines[0].get("key") != "header":
            raise _Fail(400, "the first line must be the commit header")
        header = lines[0]["value"]
        with self.hub._lock:  # all or nothing: build the new file map, then swap the branch pointer
            if branch not in repo.branches:
                raise _Fail(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            head = repo.commits[repo.branches[branch]]
            parent = header.get("parentCommit")
            if parent is not None and parent != head.sha:
                raise _Fail(412, "A commit has happened since. Please refresh and try again.")
            files = dict(head.files)
            for line in lines[1:]:
                key, value = line.get("key"), line.get("value") or {}
                path = str(value.get("path", "")).strip("/")
                if not path:
                    raise _Fail(400, f"operation {key} without a path")
                if key == "file":
                    if value.get("encoding") != "base64":
                        raise _Fail(400, "only base64 file content is supported")
                    files[path] = base64.b64decode(value.get("content", ""), validate=True)
                elif key == "deletedFile":
                    if path not in files:
                        raise _Fail(404, "A file with this name doesn't exist", "EntryNotFound")
                    del files[path]
                elif key == "deletedFolder":
                    files = {p: d for p, d in files.items() if not p.startswith(path + "/")}
                else:  # lfsFile / copies: this server never asks for LFS uploads
                    raise _Fail(400, f"unsupported commit operation {key!r}")
            sha = self.hub._commit(repo, branch, files, header.get("summary") or "")
        prefix = "" if repo_type == "model" else f"/{repo_type}s"
        self._json(
            200,
            {
                "commitOid": sha,
                "commitUrl": f"{self.hub.url}{prefix}/{repo_id}/commit/{sha}",
                "pullRequestUrl": None,
                "success": True,
            },
        )

    def _resolve(self, method: str, query: dict, repo_type: str, repo_id: str, rev: str, file: str) -> None:
        repo = self._repo(repo_type, repo_id)
        commit = self._commit_of(repo, rev)
        if file not in commit.files:
            raise _Fail(404, "Entry not found", "EntryNotFound")
        data = commit.files[file]
        headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{git_blob_sha1(data)}"', "Accept-Ranges": "bytes"}
        rng = self.headers.get("Range")
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip()) if rng else None
        if rng and m and (m.group(1) or m.group(2)):
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)) if m.group(2) else len(data) - 1, len(data) - 1)
            else:  # suffix range: the last N bytes
                start, end = max(len(data) - int(m.group(2)), 0), len(data) - 1
            if start >= len(data) or start > end:
                headers["Content-Range"] = f"bytes */{len(data)}"
                return self._send(416, b"", headers, "application/octet-stream")
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return self._send(206, data[start : end + 1], headers, "application/octet-stream")
        self._send(200, data, headers, "application/octet-stream")
