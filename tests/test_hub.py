"""`haba push` / `haba pull` / hf:// references against the loopback Hub (tests/hubserver.py).

The artifacts hold real Fashion-MNIST test images as bases. CLI tests run ``python -m habacli`` in a
subprocess with HF_ENDPOINT pointing at the server (huggingface_hub reads it at import time); library
tests pass ``endpoint=`` explicitly.
"""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hubserver import HubServer

from habacli.errors import ArtifactError, HubAuthError, HubError, UsageError
from habacli.hub import http as hub_http
from habacli.hub import transfer as hub
from habacli.hub.refs import HubRef, parse_hub_ref, parse_repo_spec, validate_repo_id

REPO_ROOT = Path(__file__).resolve().parents[1]


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hub_server():
    """A fresh loopback Hub for this module (stopped at the end)."""
    with HubServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _no_faults(hub_server):
    hub_server.clear_faults()
    yield
    hub_server.clear_faults()


def _make_artifact(
    path: Path,
    fashion_mnist_dir: Path,
    *,
    per_class: int,
    hallucinators: int,
    objective: str,
    seed: int,
    learned_lr: float | None = None,
) -> Path:
    import torch

    from habacli.artifact.codec import HabaArtifact, save_artifact
    from habacli.data import get_spec, load_split
    from habacli.networks.hallucinator import HallucinatorBank

    spec = get_spec("fashion_mnist")
    split = load_split("fashion_mnist", "test", data_dir=fashion_mnist_dir)
    idx = torch.cat([(split.labels == c).nonzero().flatten()[seed : seed + per_class] for c in range(10)])
    x = split.images[idx].float() / 255
    mean, std = torch.tensor(spec.mean).view(1, -1, 1, 1), torch.tensor(spec.std).view(1, -1, 1, 1)
    bank = HallucinatorBank(hallucinators, 1, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    art = HabaArtifact.build(
        (x - mean) / std,
        split.labels[idx],
        bank,
        spec,
        spec.mean,
        spec.std,
        objective=objective,
        objective_config={"note": "test artifact"},
        ipc=per_class,
        seed=seed,
        learned_lr=learned_lr,
        extra={"evaluation": {"convnet": {"mean": 0.61, "std": 0.02, "accs": [0.59, 0.63]}}},
    )
    return save_artifact(art, path)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, fashion_mnist_dir) -> tuple[Path, Path]:
    """Two different real artifacts: HaBa+DM (IPC 2, K=2) and HaBa+MTT (IPC 1, K=3, learned lr)."""
    d = tmp_path_factory.mktemp("artifacts")
    a = _make_artifact(d / "fm-dm.safetensors", fashion_mnist_dir, per_class=2, hallucinators=2, objective="dm", seed=0)
    b = _make_artifact(
        d / "fm-mtt.safetensors",
        fashion_mnist_dir,
        per_class=1,
        hallucinators=3,
        objective="mtt",
        seed=1,
        learned_lr=0.01,
    )
    return a, b


def _env(server: HubServer, home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE")}
    env.update(
        HF_ENDPOINT=server.url,
        HF_HOME=str(home),
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HABA_HUB_TIMEOUT="20",
        PYTHONPATH=str(REPO_ROOT),
    )
    env.update(extra)
    return env


class _NoSleep:
    """Stands in for the ``time`` module in habacli.hub.transfer: retries do not wait."""

    @staticmethod
    def sleep(seconds: float) -> None:
        pass


def haba(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run the CLI in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "habacli", *args], env=env, capture_output=True, text=True, timeout=180, cwd=REPO_ROOT
    )


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def _card_meta(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


# -- references ------------------------------------------------------------------------------


def test_parse_references():
    assert parse_hub_ref("hf://datasets/org/name") == HubRef("org/name", None, None)
    assert parse_hub_ref("hf://datasets/org/name@v1/sub/x.safetensors") == HubRef("org/name", "v1", "sub/x.safetensors")
    assert parse_hub_ref("hf://datasets/org/name@refs%2Fpr%2F3").revision == "refs/pr/3"
    assert parse_repo_spec("org/name@abc").revision == "abc" and parse_repo_spec("org/name").file == "haba.safetensors"
    for bad in (
        "hf://org/name",
        "hf://models/org/name",
        "hf://datasets/org",
        "hf://datasets/org/na--me",
        "hf://datasets/org/name@",
        "hf://datasets/org/name/../x",
        "hf://datasets/org/name@a..b",
    ):
        with pytest.raises(UsageError):
            parse_hub_ref(bad)
    for bad in ("noslash", "a/b/c", "org/.hidden", "org/name.git", "-org/name", "org/na..me", "org/" + "x" * 97, ""):
        with pytest.raises(UsageError):
            validate_repo_id(bad)


# -- push / pull through the CLI -------------------------------------------------------------


def test_cli_push_pull_private_offline_and_no_token_leak(hub_server, artifacts, tmp_path):
    art, _ = artifacts
    home = tmp_path / "hf"
    env = _env(hub_server, home)
    token = hub_server.token
    push = haba(["push", str(art), "org/fm-dm", "--private", "--token", token, "-m", "first"], env)
    assert push.returncode == 0, push.stderr
    sha = hub_server.head("org/fm-dm")
    assert f"hf://datasets/org/fm-dm@{sha}" in push.stdout and hub_server.repo("org/fm-dm").private
    files = hub_server.files("org/fm-dm")
    assert set(files) == {".gitattributes", "haba.safetensors", "README.md", "preview.png"}
    assert files["haba.safetensors"] == art.read_bytes()
    assert files["preview.png"][:8] == b"\x89PNG\r\n\x1a\n"
    assert [c.message for c in hub_server.repo("org/fm-dm").commits.values()] == ["initial commit", "first"]

    anon = haba(["pull", "org/fm-dm", "-q"], env)  # private: anonymous pulls fail
    line = _one_line_error(anon)
    assert "not found" in line and "--token" in line

    home.mkdir(parents=True, exist_ok=True)
    (home / "token").write_text(token)  # what `hf auth login` writes: huggingface_hub's own token lookup
    pull = haba(["pull", "org/fm-dm", "--out", str(tmp_path / "out")], env)
    assert pull.returncode == 0, pull.stderr
    assert (tmp_path / "out" / "haba.safetensors").read_bytes() == art.read_bytes()  # byte-identical
    assert (tmp_path / "out" / "README.md").read_bytes() == files["README.md"]
    assert list(home.glob("hub/datasets--org--fm-dm/snapshots/*/haba.safetensors"))  # through the HF cache

    before = len(hub_server.requests)
    info = haba(["info", f"hf://datasets/org/fm-dm@{sha}", "--json"], env)  # header only, via Range reads
    assert info.returncode == 0, info.stderr
    assert '"payload_sha256"' in info.stdout and "fashion_mnist" in info.stdout
    assert [r["range"] for r in hub_server.requests[before:] if r["endpoint"] == "resolve"][:1] == ["bytes=0-7"]
    assert all(r["range"] for r in hub_server.requests[before:] if r["endpoint"] == "resolve")

    before = len(hub_server.requests)
    offline = haba(["pull", "org/fm-dm", "--json"], {**env, "HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 0, offline.stderr
    assert len(hub_server.requests) == before  # served from the cache: no request reached the server
    assert "haba.safetensors" in offline.stdout and f'"commit_sha": "{sha}"' in offline.stdout
    missing = haba(["pull", "org/never-pulled", "-q"], {**env, "HF_HUB_OFFLINE": "1"})
    assert "not in the local Hugging Face cache" in _one_line_error(missing)

    for proc in (push, anon, pull, info, offline, missing):
        assert token not in proc.stdout + proc.stderr
    assert all(token.encode() not in data for data in files.values())


def test_cli_wrong_token_and_bad_ids_are_one_line(hub_server, artifacts, tmp_path):
    art, _ = artifacts
    hub.push(art, "org/fm-public", token=hub_server.token, endpoint=hub_server.url)
    env = _env(hub_server, tmp_path / "hf")
    wrong = "hf_ThisIsAWrongTokenValue1234"
    proc = haba(["pull", "org/fm-public", "--token", wrong, "-q"], env)
    line = _one_line_error(proc)
    assert proc.returncode == 2 and "401" in line and "credentials" in line
    assert wrong not in proc.stdout + proc.stderr
    bad = haba(["push", str(art), "not-a-repo-id", "-q"], env)
    assert bad.returncode == 2 and "invalid repo id" in _one_line_error(bad)
    bad_pull = haba(["pull", "org/bad--name", "-q"], env)
    assert bad_pull.returncode == 2 and "invalid repo id" in _one_line_error(bad_pull)


def test_failed_commit_leaves_repo_unchanged(hub_server, artifacts, monkeypatch):
    art, other = artifacts
    monkeypatch.setenv("HABA_HUB_RETRIES", "1")
    monkeypatch.setenv("HF_TOKEN", hub_server.token)  # huggingface_hub reads HF_TOKEN on every call
    hub.push(art, "org/fm-fail", endpoint=hub_server.url)
    head, files = hub_server.head("org/fm-fail"), hub_server.files("org/fm-fail")
    hub_server.inject("commit", status=500, times=10)
    start = len(hub_server.requests)
    with pytest.raises(HubError) as e:
        hub.push(other, "org/fm-fail", endpoint=hub_server.url)
    assert "500" in str(e.value) and "\n" not in str(e.value) and hub_server.token not in str(e.value)
    assert sum(r["endpoint"] == "commit" for r in hub_server.requests[start:]) == 2  # first try + one retry
    assert hub_server.head("org/fm-fail") == head and hub_server.files("org/fm-fail") == files
    with pytest.raises(HubAuthError, match="401"):
        hub.push(other, "org/fm-fail", token="hf_nopenopenope", endpoint=hub_server.url)
    assert hub_server.head("org/fm-fail") == head


# -- push / pull in-process ------------------------------------------------------------------


def test_repush_new_revision_old_still_pullable_and_card(hub_server, artifacts, tmp_path):
    art, other = artifacts
    first = hub.push(art, "org/fm-history", token=hub_server.token, endpoint=hub_server.url)
    second = hub.push(other, "org/fm-history", token=hub_server.token, endpoint=hub_server.url, with_images=True)
    assert first.commit_sha != second.commit_sha == hub_server.head("org/fm-history")
    old = hub.pull(f"org/fm-history@{first.commit_sha}", endpoint=hub_server.url, out=tmp_path / "old")
    new = hub.pull(second.ref, endpoint=hub_server.url)
    assert old.path.read_bytes() == art.read_bytes() and new.path.read_bytes() == other.read_bytes()
    assert old.commit_sha == first.commit_sha and new.commit_sha == second.commit_sha

    files = hub_server.files("org/fm-history")
    assert "expanded/train-00000-of-00001.parquet" in files
    meta = _card_meta(files["README.md"].decode())
    assert meta["license"] == "mit" and meta["task_categories"] == ["image-classification"]
    assert {"dataset-distillation", "haba", "mtt", "fashion-mnist", "ipc-1"} <= set(meta["tags"])
    assert meta["size_categories"] == ["n<1K"] and "viewer" not in meta
    assert meta["configs"][0]["data_files"][0]["path"] == "expanded/train-*.parquet"
    body = files["README.md"].decode()
    for needle in (
        "haba pull org/fm-history",
        "haba expand hf://datasets/org/fm-history",
        "haba evaluate",
        "@inproceedings{liu2022dataset",
        "Matching Training Trajectories",
        "0.61 ± 0.02 (2 runs)",
        "learned learning rate | 0.01",
        'load_dataset("org/fm-history"',
    ):
        assert needle in body, needle
    old_meta = _card_meta(old.card.read_text())
    assert old_meta["viewer"] is False and "configs" not in old_meta and "dm" in old_meta["tags"]
    assert "Distribution Matching" in old.card.read_text()

    import pyarrow.parquet as pq
    from PIL import Image

    table = pq.read_table(io.BytesIO(files["expanded/train-00000-of-00001.parquet"]))
    assert table.num_rows == 30 and {"image", "label"} <= set(table.column_names)  # 10 bases x 3 hallucinators
    png = table.column("image")[0].as_py()["bytes"]
    assert Image.open(io.BytesIO(png)).size == (28, 28)

    third = hub.push(art, "org/fm-history", token=hub_server.token, endpoint=hub_server.url)
    assert not any(p.startswith("expanded/") for p in hub_server.files("org/fm-history", third.commit_sha))


def test_push_retries_transient_commit_failures(hub_server, artifacts, monkeypatch):
    art, other = artifacts
    monkeypatch.setenv("HABA_HUB_TIMEOUT", "1")
    hub.push(art, "org/fm-retry", token=hub_server.token, endpoint=hub_server.url)
    repo = hub_server.repo("org/fm-retry")
    for fault, content in ((dict(status=500), other), (dict(reset=True), art), (dict(delay=2.5), other)):
        n = len(repo.commits)
        hub_server.inject("commit", **fault)
        result = hub.push(content, "org/fm-retry", token=hub_server.token, endpoint=hub_server.url)
        assert result.attempts == 2, fault
        assert hub_server.files("org/fm-retry")["haba.safetensors"] == content.read_bytes()
        assert len(repo.commits) == n + 1, fault  # exactly one new commit
    # the stalled commit woke up after the retry had landed: its parent check refused it
    import time

    time.sleep(2.0)
    assert len(repo.commits) == 5
    assert any(r["endpoint"] == "commit" and r["status"] == 412 for r in hub_server.requests)


def test_commit_applied_but_answer_lost_is_not_committed_twice(hub_server, artifacts, monkeypatch):
    """The commit lands, then the connection is reset (or half the answer is sent): the probe finds the commit
    in place and reports it. When the probe fails too, the commit is tried again: pinned to the parent, and
    its preupload finds every file already in place, so nothing is sent (huggingface_hub skips an empty
    commit) and the landed commit is reported. The repo gains exactly one commit each time."""
    art, other = artifacts
    monkeypatch.setenv("HF_TOKEN", hub_server.token)
    monkeypatch.setattr(hub, "time", _NoSleep)
    hub.push(art, "org/fm-lost", endpoint=hub_server.url)
    repo = hub_server.repo("org/fm-lost")
    cases = ((dict(lost=True), other, 1), (dict(truncate=True), art, 1), (dict(lost=True), other, 2))
    for fault, content, attempts in cases:
        n, parent = len(repo.commits), hub_server.head("org/fm-lost")
        hub_server.inject("commit", **fault)
        if attempts == 2:  # the probe after the lost answer fails: the commit is sent again
            hub_server.inject("revision", status=500, skip=1)
        start = len(hub_server.requests)
        result = hub.push(content, "org/fm-lost", endpoint=hub_server.url)
        assert result.attempts == attempts
        assert sum(r["endpoint"] == "commit" for r in hub_server.requests[start:]) == 1
        assert hub_server.idle()
        assert len(repo.commits) == n + 1, fault  # no duplicate commit
        assert result.commit_sha == hub_server.head("org/fm-lost") != parent
        assert repo.commits[result.commit_sha].parent == parent
        assert hub_server.files("org/fm-lost")["haba.safetensors"] == content.read_bytes()
    assert [k for _, k in hub_server.faults_served[-4:]] == ["lost", "truncate", "lost", "500"]


def test_push_retries_transient_failures_before_the_commit(hub_server, artifacts, monkeypatch):
    """Creating the repo, finding the parent and listing the tree are retried like the commit (found by
    the soak test: a reset there failed the push); a lost answer that cannot be checked says so."""
    art, other = artifacts
    monkeypatch.setenv("HF_TOKEN", hub_server.token)
    monkeypatch.setattr(hub, "time", _NoSleep)
    import huggingface_hub.utils._http as hf_http

    monkeypatch.setattr(hf_http, "time", _NoSleep)  # its own back-off on some calls
    hub.push(art, "org/fm-prep", endpoint=hub_server.url)
    repo = hub_server.repo("org/fm-prep")
    for endpoint, content in (("create", other), ("revision", art), ("tree", other)):
        n = len(repo.commits)
        hub_server.inject(endpoint, reset=True, times=2)
        hub.push(content, "org/fm-prep", endpoint=hub_server.url)
        assert (
            len(repo.commits) == n + 1 and hub_server.files("org/fm-prep")["haba.safetensors"] == content.read_bytes()
        )
    monkeypatch.setenv("HABA_HUB_RETRIES", "0")
    hub_server.inject("commit", lost=True)
    hub_server.inject("revision", status=500, skip=1)  # the probe after the lost answer
    with pytest.raises(HubError, match="could not be asked whether it landed; run the push again") as e:
        hub.push(art, "org/fm-prep", endpoint=hub_server.url)
    assert "\n" not in str(e.value)
    assert hub_server.idle() and hub_server.files("org/fm-prep")["haba.safetensors"] == art.read_bytes()
    n = len(repo.commits)
    hub.push(art, "org/fm-prep", endpoint=hub_server.url)  # run again: the files are there, no second commit
    assert len(repo.commits) == n


def test_pull_retries_transient_failures(hub_server, artifacts, monkeypatch):
    art, _ = artifacts
    monkeypatch.setenv("HABA_HUB_RETRIES", "1")
    hub_server.put_files("org/fm-flaky", {"haba.safetensors": art.read_bytes()})
    hub_server.inject("resolve", reset=True, method="GET")
    assert hub.pull("org/fm-flaky", endpoint=hub_server.url).path.read_bytes() == art.read_bytes()
    hub_server.inject("revision", status=500, times=5)  # cached now: huggingface_hub falls back to the cache
    assert hub.pull("org/fm-flaky", endpoint=hub_server.url).path.read_bytes() == art.read_bytes()
    hub_server.put_files("org/fm-flaky2", {"haba.safetensors": art.read_bytes()})
    hub_server.clear_faults()
    hub_server.inject("revision", status=500, times=5)
    start = len(hub_server.requests)
    with pytest.raises(HubError, match="500") as e:
        hub.pull("org/fm-flaky2", endpoint=hub_server.url)
    assert "\n" not in str(e.value)
    assert sum(r["endpoint"] == "revision" for r in hub_server.requests[start:]) == 2  # one retry


def test_push_timeout_gives_up_cleanly(hub_server, artifacts, monkeypatch):
    art, other = artifacts
    monkeypatch.setenv("HABA_HUB_RETRIES", "0")
    hub.push(art, "org/fm-timeout", token=hub_server.token, endpoint=hub_server.url)  # default timeout: a busy
    head = hub_server.head("org/fm-timeout")  # machine must not make the setup push time out
    monkeypatch.setenv("HABA_HUB_TIMEOUT", "1.0")
    hub_server.inject("commit", delay=4.0, status=503)  # 4x the timeout: a slow machine still times out first
    with pytest.raises(HubError, match="timed out") as e:
        hub.push(other, "org/fm-timeout", token=hub_server.token, endpoint=hub_server.url)
    assert "\n" not in str(e.value)
    import time

    time.sleep(3.5)  # until the delayed answer (a 503) has been sent: the repo never moved
    assert hub_server.head("org/fm-timeout") == head


def test_rejects_pickles_and_non_artifacts(hub_server, artifacts, tmp_path):
    import torch
    from safetensors.torch import save

    art, _ = artifacts
    hub_server.put_files(
        "org/evil",
        {
            "haba.safetensors": pickle.dumps({"bases": [1, 2, 3]}, protocol=4),
            "zip.safetensors": (lambda b: (torch.save({"x": torch.zeros(2)}, b), b.getvalue())[1])(io.BytesIO()),
            "plain.safetensors": save({"x": torch.zeros(3)}),
            "corrupt.safetensors": art.read_bytes()[:-4] + b"\x00\x00\x00\x01",
        },
    )
    with pytest.raises(ArtifactError, match="pickle"):
        hub.pull("org/evil", endpoint=hub_server.url)
    with pytest.raises(ArtifactError, match="pickle|zip"):
        hub.download_artifact("hf://datasets/org/evil/zip.safetensors", endpoint=hub_server.url)
    with pytest.raises(ArtifactError, match="not a haba artifact"):
        hub.download_artifact("hf://datasets/org/evil/plain.safetensors", endpoint=hub_server.url)
    with pytest.raises(ArtifactError, match="checksum"):
        hub.download_artifact("hf://datasets/org/evil/corrupt.safetensors", endpoint=hub_server.url)
    with pytest.raises(ArtifactError, match="pickle"):
        hub.read_remote_metadata("hf://datasets/org/evil", endpoint=hub_server.url)


def test_push_validates_the_artifact_before_sending(hub_server, artifacts, tmp_path):
    art, _ = artifacts
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(art.read_bytes()[:-1] + bytes([art.read_bytes()[-1] ^ 0xFF]))
    start = len(hub_server.requests)
    with pytest.raises(ArtifactError, match="checksum"):
        hub.push(corrupt, "org/fm-corrupt", token=hub_server.token, endpoint=hub_server.url)
    with pytest.raises(ArtifactError):
        hub.push(tmp_path / "missing.safetensors", "org/fm-corrupt", token=hub_server.token, endpoint=hub_server.url)
    assert len(hub_server.requests) == start  # nothing was sent


def test_remote_metadata_reads_only_the_header(hub_server, artifacts):
    from habacli.artifact.codec import read_metadata

    art, _ = artifacts
    hub.push(art, "org/fm-header", token=hub_server.token, endpoint=hub_server.url)
    start = len(hub_server.requests)
    meta = hub.read_remote_metadata("hf://datasets/org/fm-header", endpoint=hub_server.url)
    assert meta == read_metadata(art)
    reads = [r for r in hub_server.requests[start:] if r["endpoint"] == "resolve"]
    assert [r["range"] for r in reads] == ["bytes=0-7", f"bytes=8-{7 + int.from_bytes(art.read_bytes()[:8], 'little')}"]
    with pytest.raises(HubError, match="not found"):
        hub.read_remote_metadata("hf://datasets/org/nope", endpoint=hub_server.url)


def test_library_errors_are_typed(hub_server, artifacts, tmp_path):
    art, _ = artifacts
    with pytest.raises(UsageError, match="branch name"):
        hub.push(art, "org/x", revision="0" * 40, token=hub_server.token, endpoint=hub_server.url)
    with pytest.raises(HubAuthError):
        hub.push(art, "org/x", token="hf_nopenopenope", endpoint=hub_server.url)
    hub.push(art, "org/fm-x", token=hub_server.token, endpoint=hub_server.url)
    with pytest.raises(HubError, match="revision not found"):
        hub.pull("org/fm-x@no-such-branch", endpoint=hub_server.url)
    art, other = artifacts
    branch = hub.push(other, "org/fm-x", revision="dev", token=hub_server.token, endpoint=hub_server.url)
    assert hub_server.head("org/fm-x", "dev") == branch.commit_sha != hub_server.head("org/fm-x")
    assert hub.pull("org/fm-x@dev", endpoint=hub_server.url).path.read_bytes() == other.read_bytes()
    same = hub.push(art, "org/fm-x", token=hub_server.token, endpoint=hub_server.url)  # nothing changed
    assert same.commit_sha == hub_server.head("org/fm-x") and len(hub_server.repo("org/fm-x").commits) == 3
    assert hub_http.scrub("token hf_abcdefghij and Bearer xyz\nsecret", ["secret"]) == "token hf_*** and Bearer *** ***"


def test_card_license_size_and_plain_baseline():
    from habacli.hub.card import CardFacts, hub_license, render_card, size_category

    assert hub_license("MIT") == ("mit", None)
    assert hub_license("CC BY-SA 3.0 (per LeCun & Cortes); the Hub card says MIT") == ("cc-by-sa-3.0", None)
    assert hub_license("unspecified (CIFAR terms: cite Krizhevsky 2009)") == ("unknown", None)
    assert hub_license("non-commercial use only (SVHN terms)") == ("other", "non-commercial-use-only-svhn-terms")
    assert [size_category(n) for n in (0, 999, 1000, 50_000, 2_000_000)] == [
        "n<1K",
        "n<1K",
        "1K<n<10K",
        "10K<n<100K",
        "1M<n<10M",
    ]
    facts = CardFacts(
        dataset="svhn",
        num_classes=10,
        channels=3,
        height=32,
        width=32,
        license="non-commercial use only (SVHN terms)",
        objective="dc",
        ipc=10,
        num_bases=100,
        num_hallucinators=0,
        num_images=100,
        sources=["http://ufldl.stanford.edu/housenumbers/"],
    )
    card = render_card(facts, repo_id="org/svhn-dc", filename="haba.safetensors", with_images=False, preview=None)
    meta = _card_meta(card)
    assert meta["license"] == "other" and meta["license_name"] == "non-commercial-use-only-svhn-terms"
    assert meta["license_link"] == "http://ufldl.stanford.edu/housenumbers/"
    assert meta["viewer"] is False and {"dc", "svhn", "ipc-10"} <= set(meta["tags"])
    assert "Gradient Matching" in card and "liu2022dataset" not in card  # no hallucinators: no HaBa citation
    assert "No evaluation results" in card and "preview" not in card
