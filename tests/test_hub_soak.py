"""Hub soak (issue 23, item 4): consecutive ``push`` / ``pull`` round trips against the loopback Hub
(tests/hubserver.py) with seeded random faults on every endpoint: HTTP 500, a connection reset, a delay
(short, or past the client's timeout), a truncated answer and "applied, response lost".

Every push ends with exactly one new commit (holding the complete file set) or a one-line haba error and no
new commit (or, when the error came after the commit landed, that one complete commit); no commit is ever
made twice. Every pull gives the verified bytes of a commit of the repo or a one-line error. The HF cache
(a folder of this test's own) stays within a fixed bound. Loopback only; each request has a timeout.
The default run does 8 round trips; the ``slow`` one 200 (``HABA_SOAK_ROUNDS`` changes it).
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import time
from collections import Counter
from pathlib import Path

import pytest
from hubserver import HubServer

from habacli.errors import HabaError
from habacli.hub import transfer as hub

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "formats" / "examples"
ARTIFACTS = ("fashion_plain", "fashion_haba_zca", "fashion_lowres_channel", "rgb_zca_soft")
REPO = "org/soak"
SEED = 2324
TIMEOUT = 1.0  # HABA_HUB_TIMEOUT for the soak: a long delay outlasts it
ENDPOINTS = ("create", "revision", "tree", "preupload", "commit", "paths-info", "resolve")
KINDS = ("500", "reset", "delay", "delay-past-timeout", "truncate", "lost")


class _ShortSleep:
    """Stands in for the ``time`` module in habacli.hub.transfer and huggingface_hub's HTTP back-off
    (huggingface_hub.utils._http, which only calls ``time.sleep``): waits of 1-8 s become 10 ms."""

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(0.01)


def _inject(server: HubServer, rng: random.Random, count: int) -> None:
    for _ in range(count):
        endpoint, kind = rng.choice(ENDPOINTS), rng.choice(KINDS)
        times = rng.choice((1, 1, 2))
        if kind == "500":
            server.inject(endpoint, status=500, times=times)
        elif kind == "reset":
            server.inject(endpoint, reset=True, times=times)
        elif kind == "delay":
            server.inject(endpoint, delay=0.2, times=times)
        elif kind == "delay-past-timeout":
            server.inject(endpoint, delay=TIMEOUT + 0.3, times=1)
        elif kind == "truncate":
            server.inject(endpoint, truncate=True, times=times)
        else:
            server.inject(endpoint, lost=True, times=times)


def _tree_bytes(folder: Path) -> tuple[int, int]:
    """(bytes of regular files and links, not following links; bytes of blobs) under ``folder``."""
    total = blobs = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            size = os.lstat(os.path.join(root, name)).st_size
            total += size
            blobs += size if os.path.basename(root) == "blobs" else 0
    return total, blobs


def _one_line(err: BaseException) -> str:
    """The error's message, checked to be one line; returned without numbers, ports and shas (a kind)."""
    msg = str(err)
    assert msg and "\n" not in msg and "Traceback" not in msg, msg
    return re.sub(r"[0-9a-f]{40}|127\.0\.0\.1:\d+", "*", msg)


def _check_commit(server: HubServer, sha: str) -> None:
    """A pushed commit holds the whole file set: the artifact, a card naming its checksum, the preview."""
    files = server.repo(REPO).commits[sha].files
    assert {".gitattributes", "haba.safetensors", "README.md"} <= set(files), sorted(files)
    assert set(files) <= {".gitattributes", "haba.safetensors", "README.md", "preview.png"}, sorted(files)
    digest = hashlib.sha256(files["haba.safetensors"]).hexdigest()
    assert digest in files["README.md"].decode(), "the card does not describe the artifact beside it"
    assert all(files.values())


def soak(rounds: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    import huggingface_hub.constants as hf_constants

    cache = tmp_path / "hf-home" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))  # read at call time by the downloads
    monkeypatch.setenv("HABA_HUB_TIMEOUT", str(TIMEOUT))
    monkeypatch.setenv("HABA_HUB_RETRIES", "2")
    monkeypatch.setattr(hub, "time", _ShortSleep)
    import huggingface_hub.utils._http as hf_http

    monkeypatch.setattr(hf_http, "time", _ShortSleep)
    contents = {name: (EXAMPLES / f"{name}.safetensors").read_bytes() for name in ARTIFACTS}
    rng = random.Random(SEED)
    figures: Counter = Counter()
    errors: Counter = Counter()
    max_cache = max_blobs = 0
    t0 = time.perf_counter()
    with HubServer() as server:
        monkeypatch.setenv("HF_TOKEN", server.token)
        hub.push(EXAMPLES / f"{ARTIFACTS[0]}.safetensors", REPO, endpoint=server.url)  # the repo, fault-free
        pushed = set(server.repo(REPO).commits)
        for r in range(rounds):
            repo = server.repo(REPO)
            head = server.head(REPO)
            current = repo.commits[head].files["haba.safetensors"]
            name = rng.choice([n for n in ARTIFACTS if contents[n] != current])  # a real change every time
            n_commits = len(repo.commits)
            _inject(server, rng, rng.choice((0, 1, 1, 2, 3)))
            try:
                result = hub.push(EXAMPLES / f"{name}.safetensors", REPO, endpoint=server.url)
            except HabaError as e:
                errors[_one_line(e)] += 1
                figures["push errors"] += 1
                result = None
            assert server.idle(), "a request still served after the push returned"
            new = [s for s in repo.commits if s not in pushed and s != head]
            pushed.update(new)
            assert len(repo.commits) - n_commits == len(new) <= 1, f"round {r}: {len(new)} new commits"
            if result is not None:
                assert new == [result.commit_sha] == [server.head(REPO)], f"round {r}"
                assert repo.commits[result.commit_sha].files["haba.safetensors"] == contents[name]
                figures["pushes committed"] += 1
                figures[f"push attempts {result.attempts}"] += 1
            elif new:
                figures["push errors after the commit landed"] += 1
            for sha in new:
                _check_commit(server, sha)
                assert repo.commits[sha].parent == head
            server.clear_faults()

            # pull the head, pinned or by branch, into the cache or a folder
            head = server.head(REPO)
            pinned = rng.random() < 0.5
            spec = f"{REPO}@{head}" if pinned else REPO
            out = tmp_path / "pulled" if rng.random() < 0.3 else None
            _inject(server, rng, rng.choice((0, 1, 1, 2, 3)))
            try:
                got = hub.pull(spec, endpoint=server.url, out=out)
            except HabaError as e:
                errors[_one_line(e)] += 1
                figures["pull errors"] += 1
            else:
                data = got.path.read_bytes()
                if data == repo.commits[head].files["haba.safetensors"]:
                    figures["pulls of the head"] += 1
                else:  # the revision lookup failed: huggingface_hub answered from its cache (an older commit)
                    assert not pinned, f"round {r}: a pinned pull gave other bytes"
                    assert any(c.files.get("haba.safetensors") == data for c in repo.commits.values())
                    figures["pulls served from the cache (older commit)"] += 1
            assert server.idle()
            server.clear_faults()
            total, blobs = _tree_bytes(cache)
            max_cache, max_blobs = max(max_cache, total), max(max_blobs, blobs)

        repo = server.repo(REPO)
        commits = [c for c in repo.commits.values() if c.parent is not None]
        for c in commits:
            if c.message != "initial commit":
                _check_commit(server, c.sha)
        duplicates = sum(c.files == repo.commits[c.parent].files for c in commits if c.parent in repo.commits)
        served = Counter(server.faults_served)
    # the bound: one blob per distinct file pulled (4 artifacts, their cards), plus links and refs
    distinct = sum(len(b) for b in contents.values())
    bound = 2 * distinct + (1 << 20)
    figures.update(
        rounds=rounds,
        duplicates=duplicates,
        faults=sum(served.values()),
        max_cache_bytes=max_cache,
        max_blob_bytes=max_blobs,
        cache_bound_bytes=bound,
        wall_s=round(time.perf_counter() - t0, 1),
    )
    by_kind = Counter(k for (_, k) in served.elements())
    by_endpoint = Counter(e for (e, _) in served.elements())
    print(f"\nsoak: {dict(figures)}\nfaults by kind: {dict(by_kind)}\nfaults by endpoint: {dict(by_endpoint)}")
    for msg, n in errors.most_common():
        print(f"{n:4d} x {msg}")
    assert duplicates == 0
    assert max_cache <= bound, (max_cache, bound)
    assert figures["pushes committed"] + figures["push errors"] == rounds
    return figures


def test_hub_soak_short(tmp_path, monkeypatch):
    figures = soak(8, tmp_path, monkeypatch)
    assert figures["faults"] > 0


@pytest.mark.slow
def test_hub_soak(tmp_path, monkeypatch):
    figures = soak(int(os.environ.get("HABA_SOAK_ROUNDS", "200")), tmp_path, monkeypatch)
    assert figures["pushes committed"] > 0
