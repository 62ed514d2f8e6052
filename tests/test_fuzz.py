"""Property-based fuzzing of every reader of untrusted bytes (issue 23).

The contract, for every input: the reader either loads it (and, where that applies, what it loaded
round-trips) or refuses it with a typed haba error whose message is one line. Never another exception,
never a hang (each case must finish within ``CASE_SECONDS``), never a file written next to the input, and
never memory past a bound: over all the cases of one test, the process's peak resident memory may rise at most
``PEAK_MIB`` above where it started and its resident memory at the end at most ``LEAK_MIB`` (Linux: the peak is
reset through ``/proc/self/clear_refs`` before each test; elsewhere the check is skipped).

Each reader has a default-run test (``HABA_FUZZ_EXAMPLES``, default 1,000 cases; 150 for the image
folder, ~330, which decodes five images per case) and a ``slow`` one (``HABA_FUZZ_SLOW_EXAMPLES``, default
10,000). The default profile is derandomised, so CI runs the same cases every time; ``HABA_FUZZ=random``
searches new ones. Every defect found so far is kept as an ``@example`` (see docs/reliability.md).

    PYTHONPATH=. python -m pytest -q tests/test_fuzz.py                       # ~1,000 cases per reader
    PYTHONPATH=. python -m pytest -q -m slow tests/test_fuzz.py               # >= 10,000 cases per reader
    HABA_FUZZ=random PYTHONPATH=. python -m pytest -q tests/test_fuzz.py      # fresh random cases
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle  # the tests write pickles; the package never imports this module
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from habacli.artifact.codec import load_artifact, save_artifact
from habacli.artifact.header import parse_header
from habacli.data.cifar import _read_python
from habacli.data.inert_pickle import PickleDataError, load_data_checked
from habacli.data.spec import DATASETS
from habacli.distill.checkpoint import load_checkpoint, save_checkpoint
from habacli.errors import HabaError
from habacli.experts import store
from habacli.hub.refs import HubRef, parse_hub_ref, parse_repo_spec, validate_repo_id

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "formats" / "examples"
GOLDENS = [
    "rgb_single_channel",
    "fashion_plain",
    "fashion_haba_zca",
    "rgb_zca_soft",
    "fashion_lowres_channel",
    "fashion_same",
]
GOLD = {name: (EXAMPLES / f"{name}.safetensors").read_bytes() for name in GOLDENS}
CASE_SECONDS = 20.0  # a hang, not a slow machine: the slowest case takes well under a second

PEAK_MIB = 512  # a reader that trusted a declared size would allocate gigabytes; the largest golden is 52 KB
LEAK_MIB = 128  # resident growth left after 1,000-10,000 cases (caches and allocator slack, not per-case leaks)

N_DEFAULT = int(os.environ.get("HABA_FUZZ_EXAMPLES", "1000"))
N_SLOW = int(os.environ.get("HABA_FUZZ_SLOW_EXAMPLES", "10000"))
_RANDOM = os.environ.get("HABA_FUZZ") == "random"


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


@pytest.fixture(autouse=True)
def bounded_memory():
    """The memory bound of the module docstring, around every test of this module."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM, the peak resident set size
        start = _status_kib("VmRSS")
    except (OSError, KeyError):
        yield
        return
    yield
    peak, end = _status_kib("VmHWM"), _status_kib("VmRSS")
    assert (peak - start) / 1024 < PEAK_MIB, f"peak resident memory rose {(peak - start) / 1024:.0f} MiB"
    assert (end - start) / 1024 < LEAK_MIB, f"resident memory grew {(end - start) / 1024:.0f} MiB"


def fuzz_settings(n: int) -> settings:
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=not _RANDOM,
        database=None,  # no .hypothesis folder: the run writes nothing
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


FAST, SLOW = fuzz_settings(N_DEFAULT), fuzz_settings(N_SLOW)


def expect_refusal_or(load, *errors: type[BaseException]):
    """Run ``load()``; a refusal must be one of ``errors`` (default: any HabaError) with a one-line message."""
    start, refusals = time.monotonic(), errors or (HabaError,)
    try:
        return True, load()
    except refusals as e:
        msg = str(e)
        assert msg and "\n" not in msg and "\r" not in msg, f"message is not one line: {msg!r}"
        return False, e
    finally:
        assert time.monotonic() - start < CASE_SECONDS, "a reader took too long (a hang?)"


# ----------------------------------------------------------------------------- byte mutations
@st.composite
def mutated(draw, seeds: list[bytes], head: int = 0):
    """A seed with 1-4 edits: bit flips, byte sets, inserts, deletes, truncations, 8-byte integers
    (huge, negative, zero) and splices of another seed. ``head``: bias positions into the first bytes."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        limit = len(data) - 1
        if head and draw(st.booleans()):
            limit = min(limit, head)
        pos = draw(st.integers(0, limit))
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "int64", "splice"]))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[pos] = draw(st.sampled_from([0, 0x20, 0x22, 0x2C, 0x7B, 0x7D, 0x80, 0xFF, ord("0"), ord("-")]))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[pos:]
        elif op == "int64":
            value = draw(st.sampled_from([0, 1, 2**63 - 1, 2**64 - 1, 2**31, 100_000_001, len(data)]))
            data[pos : pos + 8] = struct.pack("<Q", value)
        else:
            other = draw(st.sampled_from(seeds))
            data[pos:] = other[draw(st.integers(0, len(other) - 1)) :]
    return bytes(data)


# ----------------------------------------------------------------------------- artifact: structure-aware
def split(raw: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def join(header: dict | str, payload: bytes) -> bytes:
    text = header if isinstance(header, str) else json.dumps(header, separators=(",", ":"))
    text = text.encode("utf-8", "surrogatepass")  # a lone surrogate becomes invalid UTF-8: another case
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + payload


def _paths(obj, prefix=()):
    """Every (path) into a JSON value, depth-first, in a stable order."""
    yield prefix
    if isinstance(obj, dict):
        for k in sorted(obj):
            yield from _paths(obj[k], (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:4]):
            yield from _paths(v, (*prefix, i))


_SCALARS = (
    st.none()
    | st.booleans()
    | st.sampled_from([0, 1, -1, 2**31, 2**63, -(2**63), 2**64, 10**30, 0.5, -0.0, 1e308])
    | st.integers()
    | st.floats()  # NaN and +-inf included: json.dumps writes them as NaN/Infinity literals
    | st.text(max_size=12)
    | st.sampled_from(["", "\u202e", "\x00", "\ud800", "\U0001f600", "١.٠", "²", "1.0", "haba", "F32", "U8"])
)
JSON_VALUES = st.recursive(
    _SCALARS, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3), max_leaves=6
)


def _set(obj, path, value, delete=False):
    for key in path[:-1]:
        obj = obj[key]
    if delete and isinstance(obj, dict):
        del obj[path[-1]]
    elif delete:
        obj.pop(path[-1])
    else:
        obj[path[-1]] = value


@st.composite
def structured(draw):
    """A golden with one change made where it matters: a value anywhere in the metadata document or a
    tensor entry replaced by a value of any JSON type, a key deleted or duplicated, the payload changed and
    re-signed (so the checksum holds and the value checks are reached), or the text of the JSON edited."""
    name = draw(st.sampled_from(GOLDENS))
    header, payload = split(GOLD[name])
    doc = json.loads(header["__metadata__"]["haba"])
    kind = draw(st.sampled_from(["doc", "doc", "doc", "entry", "meta", "payload", "dup", "text"]))
    if kind in ("doc", "entry", "meta"):
        target = doc if kind == "doc" else header if kind == "entry" else header["__metadata__"]
        paths = [p for p in _paths(target) if p and (kind != "entry" or p[0] != "__metadata__")]
        path = draw(st.sampled_from(paths))
        if draw(st.integers(0, 4)) == 0:
            _set(target, path, None, delete=True)
        else:
            _set(target, path, draw(JSON_VALUES))
    elif kind == "payload":
        payload = bytearray(payload)
        pos = draw(st.integers(0, max(len(payload) - 4, 0)))
        word = draw(
            st.sampled_from([b"\x00\x00\xc0\x7f", b"\x00\x00\x80\x7f", b"\x00\x00\x80\xff", b"\xff\xff\x7f\x7f"])
        )
        payload[pos : pos + 4] = word  # NaN, +inf, -inf, max float32 (overflows when decoded)
        if draw(st.booleans()):
            payload[pos : pos + 8] = struct.pack("<q", draw(st.sampled_from([-1, 10, 2**62, -(2**63)])))
        payload = bytes(payload)
        doc["payload_sha256"] = hashlib.sha256(payload).hexdigest()
    if kind != "meta":
        header["__metadata__"]["haba"] = json.dumps(doc, separators=(",", ":"))
    if kind == "dup":  # the same key twice, in the document or in the header
        key = draw(st.sampled_from(sorted(doc)))
        inner = json.dumps(doc, separators=(",", ":"))
        dup = json.dumps({key: draw(JSON_VALUES)})[1:-1]
        if draw(st.booleans()):
            header["__metadata__"]["haba"] = "{" + dup + "," + inner[1:]
            return join(header, payload)
        text = json.dumps(header, separators=(",", ":"))
        entry = draw(st.sampled_from([k for k in sorted(header) if k != "__metadata__"]))
        return join("{" + json.dumps(entry) + ":" + json.dumps(header[entry]) + "," + text[1:], payload)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=draw(st.booleans()))
    if kind == "text":
        pos = draw(st.integers(0, len(text)))
        edit = draw(
            st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "9" * 5000, "[" * 3000, '"\\ud800"', "\x00", " "])
        )
        text = text[:pos] + edit + text[pos:]
    return join(text, payload)


def _equal_artifacts(a, b) -> None:
    assert a.to_document() == b.to_document()
    for (ka, ta), (kb, tb) in zip(sorted(a.tensors().items()), sorted(b.tensors().items())):
        assert ka == kb and torch.equal(ta, tb)


def check_artifact(raw: bytes, tmp: Path) -> None:
    """Header reader (haba info), full loader (haba info --verify) and the round trip of what loads."""
    ok_header, hdr = expect_refusal_or(lambda: parse_header(raw, len(raw), name="fuzz.safetensors"))
    path = tmp / "in.safetensors"
    path.write_bytes(raw)
    ok_load, art = expect_refusal_or(lambda: load_artifact(path))
    assert sorted(p.name for p in tmp.iterdir()) == ["in.safetensors"], "a reader wrote a file"
    assert ok_load <= ok_header, "load_artifact accepted what the header reader refused"
    if ok_load:
        ok_pixels, _ = expect_refusal_or(lambda: art.decode(pixel=True))
        if ok_pixels:  # what decodes round-trips bit-exactly
            again = save_artifact(art, tmp / "again.safetensors")
            _equal_artifacts(art, load_artifact(again))
            again.unlink()


def with_doc(name: str, **changes) -> bytes:
    """A golden whose metadata document has ``changes`` (payload and its checksum kept)."""
    header, payload = split(GOLD[name])
    doc = json.loads(header["__metadata__"]["haba"])
    doc.update(changes)
    header["__metadata__"]["haba"] = json.dumps(doc)
    return join(header, payload)


_RGB_DATASET = json.loads(split(GOLD["rgb_single_channel"])[0]["__metadata__"]["haba"])["dataset"]

# Found by this fuzzer (see docs/reliability.md): each once gave a traceback or a wrong acceptance.
_DEFECTS = [
    # a header with a 5000-digit integer: ValueError from json (int digits limit), not an ArtifactError
    join('{"a":' + "9" * 5000 + "}", b""),
    # a deeply nested header: RecursionError
    join('{"a":' + "[" * 5000 + "]" * 5000 + "}", b""),
    # format_version with a superscript digit: str.isdigit() accepts it, int() raises ValueError
    join({"__metadata__": {"format": "haba", "format_version": "\u00b2.0", "haba": "{}"}}, b""),
    # a tensor whose dtype is a list: TypeError (unhashable) from the dtype lookup
    join({"x": {"dtype": [], "shape": [], "data_offsets": [0, 0]}}, b""),
    # a class name holding a lone surrogate: accepted, then saving the loaded artifact raised UnicodeEncodeError
    with_doc("rgb_single_channel", dataset=dict(_RGB_DATASET, class_names=["\ud800", "c1", "c2", "c3", "c4"])),
]


@FAST
@given(st.one_of(mutated([GOLD["rgb_single_channel"], GOLD["fashion_lowres_channel"]], head=900), structured()))
@example(_DEFECTS[0])
@example(_DEFECTS[1])
@example(_DEFECTS[2])
@example(_DEFECTS[3])
@example(_DEFECTS[4])
def test_artifact_readers_fuzz(tmp_path_factory, raw):
    check_artifact(raw, tmp_path_factory.mktemp("a"))


@pytest.mark.slow
@SLOW
@given(st.one_of(mutated(list(GOLD.values()), head=2000), structured()))
def test_artifact_readers_fuzz_slow(tmp_path_factory, raw):
    check_artifact(raw, tmp_path_factory.mktemp("a"))


# ----------------------------------------------------------------------------- checkpoints
def _checkpoint_bytes() -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "run.ckpt.safetensors"
        save_checkpoint(p, {"bases": torch.arange(12.0).reshape(3, 4), "opt.step": torch.tensor([3])}, {"it": 3})
        return p.read_bytes()


CKPT = _checkpoint_bytes()


def check_checkpoint(raw: bytes, tmp: Path) -> None:
    path = tmp / "run.ckpt.safetensors"
    path.write_bytes(raw)
    ok, loaded = expect_refusal_or(lambda: load_checkpoint(path))
    assert sorted(p.name for p in tmp.iterdir()) == [path.name]
    if ok:  # what loads round-trips
        tensors, meta = loaded
        assert isinstance(meta, dict)
        save_checkpoint(tmp / "again.safetensors", tensors, meta)
        t2, m2 = load_checkpoint(tmp / "again.safetensors")
        assert m2 == meta and t2.keys() == tensors.keys()
        (tmp / "again.safetensors").unlink()


@FAST
@given(mutated([CKPT], head=200))
@example(CKPT.replace(b'{\\"it', b'z\\"it'))  # metadata that is not JSON: JSONDecodeError escaped load_checkpoint
def test_checkpoint_reader_fuzz(tmp_path_factory, raw):
    check_checkpoint(raw, tmp_path_factory.mktemp("c"))


@pytest.mark.slow
@SLOW
@given(mutated([CKPT], head=200))
def test_checkpoint_reader_fuzz_slow(tmp_path_factory, raw):
    check_checkpoint(raw, tmp_path_factory.mktemp("c"))


# ----------------------------------------------------------------------------- expert shards
EXPERT = store.encode_expert(
    torch.arange(15.0).reshape(3, 5), {"format": store.FORMAT, "index": 0, "epochs": 2, "num_params": 5}
)


def check_expert(raw: bytes, tmp: Path) -> None:
    path = tmp / store.expert_file(0)
    path.write_bytes(raw)
    ok, got = expect_refusal_or(lambda: store.read_header(path))
    assert sorted(p.name for p in tmp.iterdir()) == [path.name]
    if ok:
        meta, shape = got
        assert isinstance(meta, dict) and len(shape) == 2


@FAST
@given(mutated([EXPERT], head=200))
@example(store.encode_expert(torch.zeros(3, 5), ["a", "list"]))  # metadata not an object: AttributeError escaped
def test_expert_shard_reader_fuzz(tmp_path_factory, raw):
    check_expert(raw, tmp_path_factory.mktemp("e"))


@pytest.mark.slow
@SLOW
@given(mutated([EXPERT], head=200))
def test_expert_shard_reader_fuzz_slow(tmp_path_factory, raw):
    check_expert(raw, tmp_path_factory.mktemp("e"))


# ----------------------------------------------------------------------------- expert manifests
MANIFEST = json.dumps(
    {
        "format": store.MANIFEST_FORMAT,
        "config": {"dataset": "mnist", "model": "convnet", "epochs": 2},
        "params": [["w", [5]]],
        "experts": [{"index": 0, "file": store.expert_file(0), "sha256": "0" * 64}],
    }
).encode()
MANIFEST_INPUTS = (
    mutated([MANIFEST])
    | JSON_VALUES.map(lambda v: json.dumps(v).encode())
    | st.sampled_from([b"[" * 5000, b"9" * 5000, b"\xff\xfe", b""])
)


def check_manifest(raw: bytes, folder: Path) -> None:
    (folder / store.MANIFEST).write_bytes(raw)
    ok, got = expect_refusal_or(lambda: store.read_manifest(folder))
    assert sorted(p.name for p in folder.iterdir()) == [store.MANIFEST]
    if ok:
        assert isinstance(got, dict) and isinstance(got["experts"], list)


@FAST
@given(MANIFEST_INPUTS)
@example(b"[]")  # a manifest that is a JSON list: AttributeError escaped read_manifest
@example(b"[" * 5000)  # nested too deeply: RecursionError
def test_expert_manifest_reader_fuzz(tmp_path_factory, raw):
    check_manifest(raw, tmp_path_factory.mktemp("m"))


@pytest.mark.slow
@SLOW
@given(MANIFEST_INPUTS)
def test_expert_manifest_reader_fuzz_slow(tmp_path_factory, raw):
    check_manifest(raw, tmp_path_factory.mktemp("m"))


# ----------------------------------------------------------------------------- CIFAR python batches
_CIFAR_SEEDS = [
    pickle.dumps(
        {
            b"batch_label": b"training batch 1 of 5",
            b"labels": [3, 1, 4, 1],
            b"data": np.arange(4 * 3072, dtype=np.uint8).reshape(4, 3072) % 251,
            b"filenames": [b"a.png", b"b.png", b"c.png", b"d.png"],
        },
        protocol=protocol,
    )
    for protocol in (2, 4)
] + [pickle.dumps({"labels": [0, 1], "data": [1.5, "x", (None, True)], "big": -(2**100)}, protocol=0)]
CIFAR10 = DATASETS.get("cifar10")


def check_cifar(raw: bytes, tmp: Path) -> None:
    ok, _ = expect_refusal_or(lambda: load_data_checked(raw, {}), PickleDataError)
    path = tmp / "data_batch_1"
    path.write_bytes(raw)
    ok, got = expect_refusal_or(lambda: _read_python(CIFAR10, path))
    assert sorted(p.name for p in tmp.iterdir()) == [path.name]
    if ok:
        images, labels = got
        assert images.dtype == np.uint8 and images.shape[1:] == (3, 32, 32) and labels.ndim == 1


@FAST
@given(mutated(_CIFAR_SEEDS) | st.binary(max_size=64))
@example(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aN\x86R.")  # encoding None: AttributeError escaped
@example(b"ca\rb\nc\n.")  # a global named with a carriage return: the refusal printed it raw, over two lines
@example(_CIFAR_SEEDS[0].replace(b"u1", b"O8", 1))  # an object-dtype array: TypeError escaped the batch reader
@example(_CIFAR_SEEDS[1].replace(b"C\x0bbatch_label", b"C\x0b\xe2atch_label", 1))  # a key that is not UTF-8
@example(b"\x80\x02cnumpy\ndtype\nq\x00X\x03\x00\x00\x00zz9q\x01\x85q\x02Rq\x03.")
def test_cifar_pickle_reader_fuzz(tmp_path_factory, raw):
    check_cifar(raw, tmp_path_factory.mktemp("p"))


@pytest.mark.slow
@SLOW
@given(mutated(_CIFAR_SEEDS) | st.binary(max_size=64))
def test_cifar_pickle_reader_fuzz_slow(tmp_path_factory, raw):
    check_cifar(raw, tmp_path_factory.mktemp("p"))


# ----------------------------------------------------------------------------- image folders
def _png(value: int, size: tuple[int, int] = (6, 5), mode: str = "L") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, size, value if mode == "L" else (value, 0, 255 - value)).save(buf, format="PNG")
    return buf.getvalue()


_IMAGE_SEEDS = [_png(10), _png(200, mode="RGB"), _png(5, (7, 7))]


def _jpeg() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, format="JPEG")
    return buf.getvalue()


_IMAGE_SEEDS.append(_jpeg())


def check_image_folder(broken: bytes, root: Path) -> None:
    from habacli.data.load import load_split

    for cls in ("cat", "dog"):
        (root / cls).mkdir()
        for i in range(2):
            (root / cls / f"{i}.png").write_bytes(_png(40 * i + (cls == "dog") * 100))
    (root / "dog" / "broken.png").write_bytes(broken)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    ok, split = expect_refusal_or(lambda: load_split(f"imagefolder:{root}", "train", image_size=6))
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before, "the loader wrote into the folder"
    if ok:
        assert split.images.shape[1:] == (split.spec.channels, 6, 6)


@settings(FAST, max_examples=max(N_DEFAULT // 3, 20))
@given(mutated(_IMAGE_SEEDS) | st.binary(max_size=40))
@example(b"")
@example(b"not an image")
def test_image_folder_reader_fuzz(tmp_path_factory, raw):
    check_image_folder(raw, tmp_path_factory.mktemp("f"))


@pytest.mark.slow
@SLOW
@given(mutated(_IMAGE_SEEDS) | st.binary(max_size=40))
def test_image_folder_reader_fuzz_slow(tmp_path_factory, raw):
    check_image_folder(raw, tmp_path_factory.mktemp("f"))


# ----------------------------------------------------------------------------- Hub references
_REF_PIECES = st.sampled_from(
    ["hf://", "datasets", "models", "/", "@", "org", "name", "main", "..", ".", "-", "_", "--", ".git", "%2F", "%",
     "a.safetensors", "é", "٣", "\u202e", "\x00", "\n", " ", "ＡＢ", "K"]
)  # fmt: skip
REF_TEXT = st.lists(_REF_PIECES, max_size=10).map("".join) | st.text(max_size=40)
ASCII_ID = r"[A-Za-z0-9][A-Za-z0-9_.-]*"


def check_ref(text: str) -> None:
    import re

    for parse in (parse_hub_ref, parse_repo_spec):
        ok, ref = expect_refusal_or(lambda parse=parse: parse(text))
        if ok:
            assert isinstance(ref, HubRef)
            org, name = ref.repo_id.split("/")
            assert re.fullmatch(ASCII_ID, org) and re.fullmatch(ASCII_ID, name), f"non-ASCII repo id {ref.repo_id!r}"
            assert parse_hub_ref(str(ref)) == ref  # round trip
    ok, _ = expect_refusal_or(lambda: validate_repo_id(text))
    if ok:
        assert text.isascii() and "\n" not in text


@FAST
@given(REF_TEXT)
@example("hf://datasets/org/caf\u00e9")  # \w matched non-ASCII letters: a repo id the Hub never accepts
@example("org/n\u0663me")  # ... and non-ASCII digits
@example("hf://datasets/org/name@main/a\nb.safetensors")  # a newline in the file name
def test_hub_reference_parser_fuzz(text):
    check_ref(text)


@pytest.mark.slow
@SLOW
@given(REF_TEXT)
def test_hub_reference_parser_fuzz_slow(text):
    check_ref(text)
