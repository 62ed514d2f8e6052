"""The loopback Hub (tests/hubserver.py) behaves like the Hub for the real huggingface_hub client."""

from __future__ import annotations

import hashlib

import httpx2
import pytest
from hubserver import HubServer, git_blob_sha1
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, hf_hub_download
from huggingface_hub import errors as hf


@pytest.fixture(scope="module")
def server():
    with HubServer() as s:
        yield s


@pytest.fixture
def api(server):
    server.clear_faults()
    return HfApi(endpoint=server.url, token=server.token)


def _add(path: str, data: bytes) -> CommitOperationAdd:
    return CommitOperationAdd(path_in_repo=path, path_or_fileobj=data)


def test_create_commit_history_and_download(server, api, tmp_path):
    url = api.create_repo("org/hist", repo_type="dataset")
    assert str(url).endswith("/datasets/org/hist")
    assert str(api.create_repo("org/hist", repo_type="dataset", exist_ok=True)) == str(url)  # 409 + url
    with pytest.raises(hf.HfHubHTTPError) as e:
        api.create_repo("org/hist", repo_type="dataset")
    assert e.value.response.status_code == 409
    first = api.create_commit(
        "org/hist", [_add("a.bin", b"one"), _add("d/b.txt", b"x")], commit_message="1", repo_type="dataset"
    ).oid
    second = api.create_commit(
        "org/hist", [_add("a.bin", b"two"), CommitOperationDelete("d/")], commit_message="2", repo_type="dataset"
    ).oid
    assert first != second and server.head("org/hist") == second
    assert set(server.files("org/hist", first)) == {".gitattributes", "a.bin", "d/b.txt"}
    assert set(server.files("org/hist")) == {".gitattributes", "a.bin"}
    old = hf_hub_download(
        "org/hist", "a.bin", repo_type="dataset", revision=first, endpoint=server.url, cache_dir=tmp_path
    )
    new = hf_hub_download("org/hist", "a.bin", repo_type="dataset", endpoint=server.url, cache_dir=tmp_path)
    assert open(old, "rb").read() == b"one" and open(new, "rb").read() == b"two"
    titles = [c.title for c in api.list_repo_commits("org/hist", repo_type="dataset")]
    assert titles == ["2", "1", "initial commit"]
    tree = {f.path: f for f in api.list_repo_tree("org/hist", repo_type="dataset", revision=first, recursive=True)}
    assert tree["a.bin"].blob_id == git_blob_sha1(b"one") and "d" in tree and "d/b.txt" in tree


def test_commit_is_atomic_and_checks_parent(server, api):
    api.create_repo("org/atomic", repo_type="dataset")
    head = server.head("org/atomic")
    with pytest.raises(hf.HfHubHTTPError):  # deleting a missing file fails the whole commit
        api.create_commit(
            "org/atomic",
            [_add("new.bin", b"data"), CommitOperationDelete("missing.bin")],
            commit_message="bad",
            repo_type="dataset",
        )
    assert server.head("org/atomic") == head and "new.bin" not in server.files("org/atomic")
    api.create_commit("org/atomic", [_add("x", b"1")], commit_message="ok", repo_type="dataset", parent_commit=head)
    with pytest.raises(hf.HfHubHTTPError) as e:  # stale parent
        api.create_commit(
            "org/atomic", [_add("y", b"2")], commit_message="stale", repo_type="dataset", parent_commit=head
        )
    assert e.value.response.status_code == 412 and "y" not in server.files("org/atomic")
    server.inject("commit", status=500)
    with pytest.raises(hf.HfHubHTTPError):
        api.create_commit("org/atomic", [_add("z", b"3")], commit_message="500", repo_type="dataset")
    assert "z" not in server.files("org/atomic")


def test_validate_yaml_parses_front_matter(api):
    api.create_repo("org/card", repo_type="dataset")
    with pytest.raises(ValueError, match="Invalid metadata"):
        api.create_commit(
            "org/card", [_add("README.md", b"---\nlicense: [mit\n---\n# x\n")], commit_message="c", repo_type="dataset"
        )
    with pytest.raises(ValueError, match="tags"):
        api.create_commit(
            "org/card", [_add("README.md", b"---\ntags: one\n---\n# x\n")], commit_message="c", repo_type="dataset"
        )
    api.create_commit(
        "org/card",
        [_add("README.md", b"---\nlicense: mit\ntags: [a]\n---\n# x\n")],
        commit_message="c",
        repo_type="dataset",
    )


def test_auth_private_and_wrong_token(server, api, tmp_path):
    api.create_repo("org/secret", repo_type="dataset", private=True)
    server.put_files("org/secret", {"f.bin": b"s3cret"}, private=True)
    anon = HfApi(endpoint=server.url, token=False)
    with pytest.raises(hf.RepositoryNotFoundError):
        anon.repo_info("org/secret", repo_type="dataset")
    with pytest.raises(hf.RepositoryNotFoundError):
        hf_hub_download(
            "org/secret", "f.bin", repo_type="dataset", endpoint=server.url, token=False, cache_dir=tmp_path
        )
    assert api.repo_info("org/secret", repo_type="dataset").private is True
    with pytest.raises(hf.HfHubHTTPError) as e:
        HfApi(endpoint=server.url, token="hf_wrongwrongwrong").repo_info("org/secret", repo_type="dataset")
    assert e.value.response.status_code == 401 and not isinstance(e.value, hf.RepositoryNotFoundError)
    with pytest.raises(hf.HfHubHTTPError) as e:  # writes need a token
        anon.create_repo("org/nope", repo_type="dataset")
    assert e.value.response.status_code == 401
    assert api.whoami()["name"] == server.user


def test_resolve_headers_and_ranges(server, api):
    data = bytes(range(256)) * 4
    server.put_files("org/range", {"blob.bin": data})
    url = f"{server.url}/datasets/org/range/resolve/main/blob.bin"
    head = httpx2.head(url)
    assert head.headers["X-Repo-Commit"] == server.head("org/range")
    assert head.headers["ETag"] == f'"{git_blob_sha1(data)}"' and int(head.headers["Content-Length"]) == len(data)
    part = httpx2.get(url, headers={"Range": "bytes=8-15"})
    assert part.status_code == 206 and part.content == data[8:16]
    assert part.headers["Content-Range"] == f"bytes 8-15/{len(data)}"
    assert httpx2.get(url, headers={"Range": "bytes=5000-"}).status_code == 416
    assert hashlib.sha256(httpx2.get(url).content).digest() == hashlib.sha256(data).digest()
    missing = httpx2.get(f"{server.url}/datasets/org/range/resolve/main/nope.bin")
    assert missing.status_code == 404 and missing.headers["X-Error-Code"] == "EntryNotFound"


def test_fault_injection(server, api):
    server.put_files("org/faults", {"f": b"1"})
    server.inject("revision", status=503, times=1)
    with pytest.raises(hf.HfHubHTTPError) as e:
        api.repo_info("org/faults", repo_type="dataset")
    assert e.value.response.status_code == 503
    assert api.repo_info("org/faults", repo_type="dataset").sha == server.head("org/faults")  # times=1 consumed
    server.inject("revision", reset=True)
    with pytest.raises(httpx2.TransportError):
        httpx2.get(f"{server.url}/api/datasets/org/faults/revision/main")
    server.inject("revision", delay=2.0)
    with pytest.raises(httpx2.TimeoutException):
        httpx2.get(f"{server.url}/api/datasets/org/faults/revision/main", timeout=0.3)
