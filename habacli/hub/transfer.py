"""Share artifacts on the Hugging Face Hub: ``push`` (one atomic commit), ``pull`` (through the HF cache)
and ``hf://datasets/ORG/NAME[@REV][/FILE]`` references for every command.

Layout of a pushed dataset repo: ``haba.safetensors`` (the artifact, whatever its local name was),
``README.md`` (the dataset card, :mod:`habacli.hub.card`), ``preview.png`` (a contact sheet) and, with
``with_images``, ``expanded/train-00000-of-00001.parquet`` for ``datasets`` and the Hub's viewer.

Authentication is huggingface_hub's own (``HF_TOKEN``, the token file of ``hf auth login``) plus an
explicit ``token``. No message haba produces contains the token. Downloads are never unpickled: a
pulled file must be a safetensors haba artifact whose checksum verifies.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from habacli import __version__
from habacli.artifact import codec
from habacli.artifact.codec import load_artifact, read_metadata
from habacli.artifact.expand import write_parquet
from habacli.artifact.grid import render_grid
from habacli.artifact.header import Header, local_path, parse_header
from habacli.errors import ArtifactError, ArtifactNotFoundError, HubError, UsageError
from habacli.hub.http import (
    _configure_session,
    _endpoint,
    _hub_errors,
    _offline,
    _retries,
    _secrets,
    _status,
    _timeout,
    _transient,
)
from habacli.hub.refs import DEFAULT_FILENAME, HubRef, is_hub_ref, parse_hub_ref, parse_repo_spec, validate_repo_id
from habacli.runtime.atomic import atomic_path
from habacli.runtime.progress import ProgressFn, note

ARTIFACT_NAME = DEFAULT_FILENAME
CARD_NAME = "README.md"
PREVIEW_NAME = "preview.png"
PARQUET_PATH = "expanded/train-00000-of-00001.parquet"
MAX_HEADER_BYTES = 100_000_000  # the safetensors limit
T = TypeVar("T")


@dataclass(frozen=True)
class PushResult:
    """What :func:`push` did."""

    repo_id: str
    revision: str
    commit_sha: str
    url: str
    files: tuple[str, ...]
    attempts: int

    @property
    def ref(self) -> str:
        """A pinned reference to the pushed artifact (``hf://datasets/ORG/NAME@SHA``)."""
        return f"hf://datasets/{self.repo_id}@{self.commit_sha}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {**self.__dict__, "files": list(self.files), "ref": self.ref}


@dataclass(frozen=True)
class PullResult:
    """What :func:`pull` fetched: ``path`` is the verified artifact (in the HF cache, or in ``out``)."""

    repo_id: str
    revision: str | None
    commit_sha: str | None
    path: Path
    card: Path | None
    cache_path: Path

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


# -- the file checks -------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _git_blob_sha1(path: Path) -> str:
    h = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sniff_safetensors(head: bytes, size: int, name: str) -> int:
    """Check the first bytes of a would-be artifact; return the header length or raise :class:`ArtifactError`.
    Pickles and ``torch.save`` zips are named as such and refused (haba never unpickles)."""
    # bytes 0-7 are a length that may start with 0x80 ("PK.." too): only byte 8 tells a header from a pickle
    if (head[:1] == b"\x80" or head[:4] == b"PK\x03\x04") and head[8:9] != b"{":
        raise ArtifactError(name, "is a Python pickle or torch.save zip, not a haba artifact (haba never unpickles)")
    n = int.from_bytes(head[:8], "little")
    if len(head) < 9 or head[8:9] != b"{" or n < 2 or n > MAX_HEADER_BYTES or (size >= 0 and n > size - 8):
        raise ArtifactError(name, "is not a safetensors file (bad header)")
    return n


def check_artifact_file(path: Path, *, name: str | None = None) -> Any:
    """Refuse anything but a haba artifact whose checksum verifies (:func:`load_artifact`); return it."""
    with open(path, "rb") as f:
        sniff_safetensors(f.read(16), path.stat().st_size, name or str(path))
    try:
        return load_artifact(path, verify=True)
    except ArtifactError as e:
        raise ArtifactError(name or path, e.problem) from e


# -- push ------------------------------------------------------------------------------------


def _build_files(
    artifact: Any, src: Path, tmp: Path, *, repo_id: str, with_images: bool, progress: ProgressFn | None
) -> dict[str, Path]:
    from habacli.hub.card import facts_from_metadata, render_card  # lazy: pyyaml

    files = {ARTIFACT_NAME: src}
    preview: str | None = PREVIEW_NAME
    try:
        render_grid(artifact).save(tmp / PREVIEW_NAME, format="PNG")
        files[PREVIEW_NAME] = tmp / PREVIEW_NAME
    except UsageError as e:  # e.g. a channel count PNG cannot show: push without a preview
        preview = None
        _say(progress, f"no preview image: {e}")
    if with_images:
        _say(progress, "expanding the artifact to parquet")
        (tmp / "expanded").mkdir()
        write_parquet(artifact, tmp / PARQUET_PATH, progress=progress)
        files[PARQUET_PATH] = tmp / PARQUET_PATH
    facts = facts_from_metadata(read_metadata(src), sha256=sha256_file(src))
    card = render_card(
        facts, repo_id=repo_id, filename=ARTIFACT_NAME, with_images=with_images, preview=preview, source_name=src.name
    )
    (tmp / CARD_NAME).write_text(card, encoding="utf-8")
    files[CARD_NAME] = tmp / CARD_NAME
    return files


def _say(progress: ProgressFn | None, msg: str) -> None:
    note(progress, "hub", msg)


def _landed(api: Any, repo_id: str, sha: str, files: dict[str, Path]) -> bool:
    """True when commit ``sha`` holds exactly our files (the lost-response case of a retried commit)."""
    infos = {f.path: f for f in api.get_paths_info(repo_id, list(files), repo_type="dataset", revision=sha)}
    for path, local in files.items():
        remote = infos.get(path)
        if remote is None:
            return False
        lfs = getattr(remote, "lfs", None)
        if lfs is not None:
            if lfs.sha256 != sha256_file(local):
                return False
        elif remote.blob_id != _git_blob_sha1(local):
            return False
    return True


def _reason(err: BaseException) -> str:
    status = _status(err)
    return f"the Hub answered {status}" if status is not None else type(err).__name__


def _retrying(fn: Callable[[], T], what: str, progress: ProgressFn | None) -> T:
    """``fn()`` (idempotent Hub calls), retried on transient failures like a commit."""
    retries = _retries()
    for attempt in range(retries + 1):
        try:
            return fn()
        except Exception as e:
            if not _transient(e) or attempt == retries:
                raise
            wait = min(2.0**attempt, 8.0)
            _say(progress, f"{what} failed ({_reason(e)}); retrying in {wait:g} s [{attempt + 1}/{retries}]")
            time.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


def _commit(
    api: Any,
    repo_id: str,
    files: dict[str, Path],
    deletes: list[str],
    *,
    revision: str,
    parent: str,
    message: str,
    description: str,
    progress: ProgressFn | None,
) -> tuple[str, int]:
    """One atomic commit pinned to ``parent``, retried on transient failures. Returns (sha, attempts)."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete  # lazy: huggingface_hub

    retries = _retries()
    for attempt in range(retries + 1):
        ops: list[Any] = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(f)) for p, f in files.items()]
        ops += [CommitOperationDelete(path_in_repo=d) for d in deletes]
        try:
            info = api.create_commit(
                repo_id,
                ops,
                commit_message=message,
                commit_description=description,
                repo_type="dataset",
                revision=revision,
                parent_commit=parent,
            )
            return info.oid, attempt + 1
        except Exception as e:
            if not (_transient(e) or (attempt > 0 and _status(e) == 412)):
                raise
            try:  # did the commit land although the answer was lost?
                head = api.repo_info(repo_id, repo_type="dataset", revision=revision).sha
                landed = head != parent and _landed(api, repo_id, head, files)
                known = True
            except Exception as probe:  # noqa: BLE001 - the Hub is still unwell: retry or give up below
                if not _transient(probe):
                    raise
                head, landed, known = parent, False, False
            if landed:
                return head, attempt + 1
            if head != parent:
                raise HubError(
                    f"push {repo_id}: another commit landed on {revision} during the push; "
                    "nothing of this push was committed, run it again"
                ) from e
            if attempt == retries:
                if known:
                    raise
                raise HubError(
                    f"push {repo_id}: the commit failed ({_reason(e)}) and the Hub could not be asked whether "
                    "it landed; run the push again (a commit whose files are already there is not made twice)"
                ) from e
            wait = min(2.0**attempt, 8.0)
            _say(progress, f"commit failed ({type(e).__name__}); retrying in {wait:g} s [{attempt + 1}/{retries}]")
            time.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


def push(
    artifact: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    message: str | None = None,
    with_images: bool = False,
    endpoint: str | None = None,
    progress: ProgressFn | None = None,
) -> PushResult:
    """Upload ``artifact`` with its dataset card and preview to the dataset repo ``repo_id`` in one commit.

    The repo is created if needed (``private`` makes a new or existing repo private). ``revision`` is a
    branch (created from ``main`` if missing). The artifact is verified before anything is sent.
    """
    repo_id = validate_repo_id(repo_id)
    branch = revision or "main"
    if re.fullmatch(r"[0-9a-f]{40}", branch) or branch.startswith("refs/"):
        raise UsageError(f"--revision {branch!r}: push to a branch name, not a commit or a ref")
    src = resolve_artifact(artifact)
    art = load_artifact(src, verify=True)
    secrets, url = _secrets(token), _endpoint(endpoint)
    with tempfile.TemporaryDirectory(prefix="haba-push-") as tmp:
        files = _build_files(art, Path(src), Path(tmp), repo_id=repo_id, with_images=with_images, progress=progress)
        with _hub_errors("push", repo_id, secrets, url):
            from huggingface_hub import HfApi, RepoFile  # lazy: huggingface_hub

            _configure_session()
            api = HfApi(endpoint=url, token=token, library_name="haba", library_version=__version__)
            _say(progress, f"creating or reusing dataset repo {repo_id}")

            def prepare() -> tuple[Any, list[str]]:  # idempotent: retried as a whole on transient faults
                api.create_repo(repo_id, repo_type="dataset", private=private or None, exist_ok=True)
                if private and not api.repo_info(repo_id, repo_type="dataset").private:
                    api.update_repo_settings(repo_id, repo_type="dataset", private=True)
                if branch != "main":
                    api.create_branch(repo_id, branch=branch, repo_type="dataset", exist_ok=True)
                parent = api.repo_info(repo_id, repo_type="dataset", revision=branch).sha
                tree = api.list_repo_tree(repo_id, repo_type="dataset", revision=parent, recursive=True)
                stale = [
                    f.path
                    for f in tree
                    if isinstance(f, RepoFile) and f.path.startswith("expanded/") and f.path not in files
                ]
                return parent, stale

            parent, stale = _retrying(prepare, "preparing the push", progress)
            msg = message or f"Upload a haba artifact (IPC {art.ipc}, {art.num_images} images)"
            _say(progress, f"committing {len(files)} file(s) to {repo_id}@{branch}")
            sha, attempts = _commit(
                api,
                repo_id,
                files,
                stale,
                revision=branch,
                parent=parent,
                message=msg,
                description=f"haba {__version__}; {ARTIFACT_NAME} sha256 {sha256_file(src)}",
                progress=progress,
            )
    return PushResult(repo_id, branch, sha, f"{url}/datasets/{repo_id}", tuple(sorted(files)), attempts)


# -- pull ------------------------------------------------------------------------------------


def _download(ref: HubRef, *, token: str | None, endpoint: str) -> tuple[Path, Path | None, str | None]:
    """Fetch the artifact (and the card) into the HF cache; return (artifact, card, commit sha)."""
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download  # lazy: huggingface_hub

    patterns = [ref.file, CARD_NAME]
    folder = Path(
        snapshot_download(
            ref.repo_id,
            repo_type="dataset",
            revision=ref.revision,
            allow_patterns=patterns,
            token=token,
            endpoint=endpoint,
        )
    )
    sha = folder.name if re.fullmatch(r"[0-9a-f]{40}", folder.name) else None
    card = folder / CARD_NAME if (folder / CARD_NAME).is_file() else None
    path = folder / ref.file
    if path.is_file():
        return path, card, sha
    if ref.filename is not None or _offline():
        raise ArtifactNotFoundError(None, f"{ref}: no file {ref.file!r} in the repo at this revision")
    api = HfApi(endpoint=endpoint, token=token, library_name="haba", library_version=__version__)
    names = [
        f
        for f in api.list_repo_files(ref.repo_id, repo_type="dataset", revision=sha or ref.revision)
        if f.endswith(".safetensors")
    ]
    if len(names) != 1:
        have = ", ".join(names) if names else "none"
        raise ArtifactNotFoundError(
            None,
            f"{ref}: no {ARTIFACT_NAME} in the repo (safetensors files: {have}); "
            "name one as hf://datasets/ORG/NAME[@REV]/FILE",
        )
    got = hf_hub_download(
        ref.repo_id, names[0], repo_type="dataset", revision=sha or ref.revision, token=token, endpoint=endpoint
    )
    return Path(got), card, sha


def pull(
    spec: str,
    *,
    out: str | os.PathLike | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    progress: ProgressFn | None = None,
) -> PullResult:
    """Download ``ORG/NAME[@REV]`` (or an ``hf://datasets/...`` reference) through the HF cache and verify it.

    With ``out`` the artifact and the card are copied (atomically) into that folder. Works offline
    from the cache when ``HF_HUB_OFFLINE=1``.
    """
    ref = parse_repo_spec(spec)
    secrets, url = _secrets(token), _endpoint(endpoint)
    with _hub_errors("pull", ref.repo_id, secrets, url):
        if not _offline():
            _configure_session()
        _say(progress, f"downloading {ref}")
        for attempt in range(_retries() + 1):  # downloads are idempotent: retry transient failures
            try:
                path, card, sha = _download(ref, token=token, endpoint=url)
                break
            except Exception as e:
                if not _transient(e) or attempt == _retries():
                    raise
                _say(progress, f"download failed ({type(e).__name__}); retrying [{attempt + 1}/{_retries()}]")
                time.sleep(min(2.0**attempt, 8.0))
        check_artifact_file(path, name=f"{ref.repo_id}/{path.name}")
    cache_path = path
    if out is not None:
        out_dir = Path(out)
        if out_dir.exists() and not out_dir.is_dir():
            raise UsageError(f"--out {out_dir} exists and is not a folder")
        dest = out_dir / path.name
        for source, target in ((card, out_dir / CARD_NAME), (path, dest)):
            if source is not None:
                with atomic_path(target) as tmp:
                    shutil.copyfile(source, tmp)
        path, card = dest, (out_dir / CARD_NAME if card is not None else None)
    return PullResult(ref.repo_id, ref.revision, sha, path, card, cache_path)


def download_artifact(ref: str, *, token: str | None = None, endpoint: str | None = None) -> Path:
    """Resolve ``hf://datasets/ORG/NAME[@REV][/FILE]`` to a verified artifact file in the HF cache."""
    parse_hub_ref(ref)
    return pull(ref, token=token, endpoint=endpoint).path


# -- remote header ---------------------------------------------------------------------------


def _ranged(session: Any, url: str, headers: dict[str, str], start: int, end: int) -> tuple[bytes, int]:
    """Bytes [start, end] of a remote file (the server may ignore the Range) and the file size (-1 unknown)."""
    from huggingface_hub.utils import hf_raise_for_status  # lazy: huggingface_hub

    r = session.get(url, headers={**headers, "Range": f"bytes={start}-{end}"}, timeout=_timeout())
    hf_raise_for_status(r)
    if r.status_code == 206:
        m = re.search(r"/(\d+)$", r.headers.get("Content-Range", ""))
        return r.content, int(m.group(1)) if m else -1
    return r.content[start : end + 1], len(r.content)


def read_remote_header(ref: str, *, token: str | None = None, endpoint: str | None = None) -> tuple[bytes, int]:
    """The first ``8 + N`` bytes (length + JSON header) of a Hub artifact and the file's size, read with two
    HTTP Range requests (8 bytes, then the header); the tensors are never downloaded."""
    from huggingface_hub import get_session, hf_hub_url  # lazy: huggingface_hub
    from huggingface_hub.utils import build_hf_headers  # lazy: huggingface_hub

    h = parse_hub_ref(ref)
    secrets, url = _secrets(token), _endpoint(endpoint)
    name = f"{h.repo_id}/{h.file}"
    with _hub_errors("info", h.repo_id, secrets, url):
        _configure_session()
        file_url = hf_hub_url(h.repo_id, h.file, repo_type="dataset", revision=h.revision, endpoint=url)
        headers = build_hf_headers(token=token, library_name="haba", library_version=__version__)
        session = get_session()
        first, size = _ranged(session, file_url, headers, 0, 7)
        try:  # a plausible length: read the header, then sniff again with its real first byte
            n = sniff_safetensors(first + b"{", size, name)
        except ArtifactError:
            sniff_safetensors(first, size, name)  # names a pickle/zip as such
            raise
        rest, _ = _ranged(session, file_url, headers, 8, 8 + n - 1)
        sniff_safetensors(first + rest[:1], size, name)
    if len(first) != 8 or len(rest) != n:
        raise ArtifactError(name, "truncated safetensors header")
    return first + rest, size


def read_remote_metadata(ref: str, *, token: str | None = None, endpoint: str | None = None) -> dict[str, Any]:
    """What :func:`habacli.artifact.codec.read_metadata` returns for a Hub artifact, validated the same way, from
    its header only. Offline (``HF_HUB_OFFLINE=1``) it reads the cached copy instead."""
    if _offline():
        return codec.read_metadata(download_artifact(ref, token=token, endpoint=endpoint))
    raw, size = read_remote_header(ref, token=token, endpoint=endpoint)
    return codec.parse_header(raw, size, name=ref).doc


# -- references to local paths ---------------------------------------------------------------


def resolve_artifact(ref: str | os.PathLike) -> Path:
    """Return a local path for ``ref``, downloading Hub references through the HF cache."""
    if is_hub_ref(ref):
        return download_artifact(str(ref))
    return local_path(ref)


def remote_header(ref: str) -> Header | None:
    """The parsed header of a Hub artifact via HTTP range requests (None when offline: use the cache)."""
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False"):
        return None
    raw, size = read_remote_header(ref)
    return parse_header(raw, size, name=ref)
