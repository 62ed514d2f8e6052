"""Malformed artifacts: each raises ONE typed ArtifactError naming the file and the problem, and
``haba info`` (``--verify`` for payload problems) exits 2 with one line on stderr and no traceback."""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import pickle
import random
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from habacli.artifact.codec import load_artifact, read_metadata
from habacli.cli import main
from habacli.errors import ArtifactError, ArtifactNotFoundError

EXAMPLES = Path(__file__).resolve().parents[1] / "formats" / "examples"
BASE = (EXAMPLES / "rgb_single_channel.safetensors").read_bytes()  # K = 2, real Fashion-MNIST bases
ZBASE = (EXAMPLES / "fashion_haba_zca.safetensors").read_bytes()  # with ZCA
LBASE = (EXAMPLES / "fashion_lowres_channel.safetensors").read_bytes()  # format 1.1: 6x6 bases, per-channel
IBASE = (EXAMPLES / "fashion_infer.safetensors").read_bytes()  # format 1.2: K = 1, M = 2 compensators, soft labels
_NP = {"F32": np.float32, "I64": np.int64, "F64": np.float64}


# ----------------------------------------------------------------------------- byte surgery
def split(data: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def join(header: dict, payload: bytes) -> bytes:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + payload


def edit_doc(fn: Callable[[dict], None], data: bytes = BASE) -> bytes:
    header, payload = split(data)
    doc = json.loads(header["__metadata__"]["haba"])
    fn(doc)
    header["__metadata__"]["haba"] = json.dumps(doc)
    return join(header, payload)


def edit_meta(fn: Callable[[dict], None], data: bytes = BASE) -> bytes:
    header, payload = split(data)
    fn(header["__metadata__"])
    return join(header, payload)


def reseal(header: dict, payload: bytes) -> bytes:
    """Recompute the checksum so that only the intended problem remains."""
    doc = json.loads(header["__metadata__"]["haba"])
    doc["payload_sha256"] = hashlib.sha256(payload).hexdigest()
    header["__metadata__"]["haba"] = json.dumps(doc)
    return join(header, payload)


def edit_values(name: str, fn: Callable[[np.ndarray], None], data: bytes = BASE) -> bytes:
    header, payload = split(data)
    e = header[name]
    b, end = e["data_offsets"]
    arr = np.frombuffer(payload[b:end], dtype=_NP[e["dtype"]]).copy()
    fn(arr)
    return reseal(header, payload[:b] + arr.tobytes() + payload[end:])


def drop_tensor(name: str, data: bytes = BASE) -> bytes:
    header, payload = split(data)
    b, end = header.pop(name)["data_offsets"]
    for k, e in header.items():
        if k != "__metadata__" and e["data_offsets"][0] >= end:
            e["data_offsets"] = [e["data_offsets"][0] - (end - b), e["data_offsets"][1] - (end - b)]
    return reseal(header, payload[:b] + payload[end:])


def edit_entry(name: str, data: bytes = BASE, **changes) -> bytes:
    header, payload = split(data)
    header[name].update(changes)
    return join(header, payload)


def shorter_labels() -> bytes:
    """One label fewer than bases (the layout stays valid)."""
    header, payload = split(BASE)
    b, end = header["labels"]["data_offsets"]
    header["labels"].update(shape=[header["labels"]["shape"][0] - 1], data_offsets=[b, end - 8])
    for k, e in header.items():
        if k not in ("__metadata__", "labels") and e["data_offsets"][0] >= end:
            e["data_offsets"] = [e["data_offsets"][0] - 8, e["data_offsets"][1] - 8]
    return reseal(header, payload[: end - 8] + payload[end:])


def flip_payload_byte(data: bytes = BASE) -> bytes:
    b = bytearray(data)
    b[-3] ^= 0x40
    return bytes(b)


def torch_zip_checkpoint() -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save({"bases": torch.zeros(2, 3)}, buf)
    return buf.getvalue()


def plain_safetensors() -> bytes:
    import torch
    from safetensors.torch import save

    return save({"bases": torch.zeros(2, 3)})


def many_tensors() -> bytes:
    header, payload = split(BASE)
    for i in range(1100):
        header[f"x{i}"] = {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}
    return join(header, payload)


def _set(path: str, value) -> Callable[[dict], None]:
    def fn(doc: dict) -> None:
        *parents, last = path.split(".")
        for p in parents:
            doc = doc[p]
        if value is KeyError:
            del doc[last]
        else:
            doc[last] = value

    return fn


HEADER_CASES: dict[str, Callable[[], bytes]] = {
    "empty file": lambda: b"",
    "five bytes": lambda: b"\x01\x02\x03\x04\x05",
    "random bytes": lambda: random.Random(0).randbytes(4096),
    "truncated in the length field": lambda: BASE[:4],
    "truncated in the header": lambda: BASE[:200],
    "truncated in the payload": lambda: BASE[:-100],
    "truncated after the header": lambda: BASE[: 8 + struct.unpack("<Q", BASE[:8])[0]],
    "trailing bytes after the payload": lambda: BASE + b"\0" * 16,
    "header length past the end": lambda: struct.pack("<Q", len(BASE)) + BASE[8:],
    "header over 100 MB": lambda: struct.pack("<Q", 200_000_000) + BASE[8:],
    "header length zero": lambda: struct.pack("<Q", 0) + BASE[8:],
    "header not JSON": lambda: join({}, b"")[:8] + b"{not json at all" + b" " * 0,
    "header not UTF-8": lambda: struct.pack("<Q", 8) + b'{"\xff":12}',
    "header a JSON list": lambda: struct.pack("<Q", 8) + b"[1, 2] " + b" ",
    "plain safetensors without haba metadata": plain_safetensors,
    "metadata of another format": lambda: edit_meta(lambda m: m.update(format="other")),
    "unknown major version": lambda: edit_meta(lambda m: m.update(format_version="2.0")),
    "malformed version": lambda: edit_meta(lambda m: m.update(format_version="one")),
    "haba metadata not JSON": lambda: edit_meta(lambda m: m.update(haba="{oops")),
    "haba metadata not an object": lambda: edit_meta(lambda m: m.update(haba="[]")),
    "missing dataset": lambda: edit_doc(_set("dataset", KeyError)),
    "ipc of the wrong type": lambda: edit_doc(_set("ipc", "2")),
    "class_names of the wrong length": lambda: edit_doc(_set("dataset.class_names", ["a"])),
    "std of zero": lambda: edit_doc(_set("normalization.std", [0.2, 0.0, 0.2])),
    "unknown hallucinator architecture": lambda: edit_doc(_set("hallucinators.architecture", "unet")),
    "kernel contradicting the hallucinator shapes": lambda: edit_doc(_set("hallucinators.kernel_size", 5)),
    "hallucinator channels contradicting the bases": lambda: edit_doc(_set("hallucinators.in_channels", 3)),
    "more hallucinators declared than stored": lambda: edit_doc(
        lambda d: d.update(num_images=30) or d["hallucinators"].update(count=3)
    ),
    "storage not matching the tensors": lambda: edit_doc(_set("storage.total", 1)),
    "num_images wrong": lambda: edit_doc(_set("num_images", 7)),
    "malformed checksum field": lambda: edit_doc(_set("payload_sha256", "abc")),
    "created not an RFC 3339 time": lambda: edit_doc(_set("created", "yesterday")),
    "a float where an int is required": lambda: edit_doc(_set("seed", 1.5)),
    "missing labels tensor": lambda: drop_tensor("labels"),
    "missing hallucinator tensor": lambda: drop_tensor("hallucinators.scale"),
    "missing zca tensor": lambda: drop_tensor("zca.basis", ZBASE),
    "zca dim contradicting the image size": lambda: edit_doc(_set("zca.dim", 100), ZBASE),
    "labels of the wrong dtype": lambda: edit_entry("labels", dtype="F64"),
    "unknown dtype": lambda: edit_entry("labels", dtype="Q8"),
    "labels count differs from bases": lambda: shorter_labels(),
    "declared size contradicting the offsets": lambda: edit_entry("labels", shape=[11]),
    "negative dimension": lambda: edit_entry("labels", shape=[-10]),
    "overlapping offsets": lambda: edit_entry("labels", data_offsets=[8, 88]),
    "too many tensors": many_tensors,
    "1.1: bases larger than the images": lambda: edit_doc(_set("bases.height", 13), LBASE),
    "1.1: bases height not an int": lambda: edit_doc(_set("bases.height", 6.5), LBASE),
    "1.1: low-resolution bases declared full size": lambda: edit_doc(_set("bases.height", KeyError), LBASE),
    "1.1: unknown modulation": lambda: edit_doc(_set("hallucinators.modulation", "global"), LBASE),
    "1.1: per-channel tensors read as per-pixel (a 1.0 reader)": lambda: edit_doc(
        _set("hallucinators.modulation", KeyError), LBASE
    ),
    "1.2: compensator of the wrong shape": lambda: edit_entry("compensators.values", IBASE, shape=[2, 1, 1, 12, 12]),
    "1.2: soft labels of the wrong width": lambda: edit_entry("instance_soft_labels", IBASE, shape=[40, 8]),
    "1.2: unknown compensator method": lambda: edit_doc(_set("compensators.method", "mixup"), IBASE),
    "1.2: unknown combine rule": lambda: edit_doc(_set("compensators.combine", "add"), IBASE),
    "1.2: soft labels of another kind": lambda: edit_doc(_set("instance_soft_labels.kind", "probabilities"), IBASE),
    "1.2: temperature of zero": lambda: edit_doc(_set("instance_soft_labels.temperature", 0), IBASE),
    "1.2: both soft-label kinds": lambda: edit_doc(_set("soft_labels", True), IBASE),
    "1.2: num_instances wrong": lambda: edit_doc(_set("num_instances", 12), IBASE),
    "1.2: compensator storage not counted": lambda: edit_doc(_set("storage.compensators", 0), IBASE),
    "1.2: recipe without epochs": lambda: edit_doc(_set("evaluation_recipe.epochs", KeyError), IBASE),
    "1.2: compensator tensors without the block": lambda: edit_doc(
        lambda d: d.update(compensators=None, instance_soft_labels=None, num_instances=12), IBASE
    ),
    "torch zip checkpoint renamed": torch_zip_checkpoint,
    "legacy pickle renamed": lambda: pickle.dumps({"bases": [1.0, 2.0]}, protocol=2),
}

PAYLOAD_CASES: dict[str, Callable[[], bytes]] = {
    "checksum mismatch (one flipped byte)": flip_payload_byte,
    "label out of range": lambda: edit_values("labels", lambda a: a.__setitem__(0, 99)),
    "negative label": lambda: edit_values("labels", lambda a: a.__setitem__(3, -1)),
    "NaN in the bases": lambda: edit_values("bases", lambda a: a.__setitem__(5, np.nan)),
    "Inf in a hallucinator": lambda: edit_values("hallucinators.shift", lambda a: a.__setitem__(0, np.inf)),
    "NaN in the zca basis": lambda: edit_values("zca.basis", lambda a: a.__setitem__(0, np.nan), ZBASE),
    "1.2: NaN in a compensator": lambda: edit_values("compensators.values", lambda a: a.__setitem__(7, np.nan), IBASE),
    "1.2: Inf in the soft labels": lambda: edit_values(
        "instance_soft_labels", lambda a: a.__setitem__(3, np.inf), IBASE
    ),
    "1.2: subset out of range": lambda: edit_values("compensators.subset", lambda a: a.__setitem__(2, 1), IBASE),
    "1.2: a class twice in a subset": lambda: edit_values("compensators.subset", lambda a: a.__setitem__(10, 0), IBASE),
}


@pytest.fixture(autouse=True)
def _never_unpickle(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the reader tried to unpickle")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    import torch

    monkeypatch.setattr(torch, "load", refuse)


def _cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def _assert_one_line(code: int, err: str, path: Path) -> None:
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    assert str(path) in err


def test_enough_cases() -> None:
    assert len(HEADER_CASES) + len(PAYLOAD_CASES) >= 30


@pytest.mark.parametrize("case", sorted(HEADER_CASES))
def test_header_problem(case: str, tmp_path: Path, capsys) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(HEADER_CASES[case]())
    with pytest.raises(ArtifactError) as exc:
        read_metadata(path)
    assert exc.value.path == str(path) and exc.value.problem
    with pytest.raises(ArtifactError):
        load_artifact(path)
    code, out, err = _cli(capsys, ["info", str(path)])
    _assert_one_line(code, err, path)
    assert out == ""


@pytest.mark.parametrize("case", sorted(PAYLOAD_CASES))
def test_payload_problem(case: str, tmp_path: Path, capsys) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(PAYLOAD_CASES[case]())
    read_metadata(path)  # the header alone is fine
    with pytest.raises(ArtifactError) as exc:
        load_artifact(path)
    assert str(path) in str(exc.value)
    code, _, err = _cli(capsys, ["info", "--verify", str(path)])
    _assert_one_line(code, err, path)


def test_checksum_is_skipped_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "flipped.safetensors"
    path.write_bytes(flip_payload_byte())
    with pytest.raises(ArtifactError, match="checksum"):
        load_artifact(path)
    load_artifact(path, verify=False)


def test_missing_path_and_directory(tmp_path: Path, capsys) -> None:
    with pytest.raises(ArtifactNotFoundError):
        load_artifact(tmp_path / "nope.safetensors")
    with pytest.raises(ArtifactNotFoundError):
        read_metadata(tmp_path)
    for target in (tmp_path / "nope.safetensors", tmp_path):
        code, _, err = _cli(capsys, ["info", str(target)])
        _assert_one_line(code, err, target)


def test_unreadable_file(tmp_path: Path, monkeypatch, capsys) -> None:
    # Tests run as root, where chmod 000 does not stop reads: simulate the OS refusing the open.
    path = tmp_path / "locked.safetensors"
    path.write_bytes(BASE)
    real_open = builtins.open

    def guarded(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    with pytest.raises(ArtifactError, match="permission denied"):
        read_metadata(path)
    code, _, err = _cli(capsys, ["info", str(path)])
    _assert_one_line(code, err, path)


@pytest.mark.parametrize("case", ["random bytes", "torch zip checkpoint renamed", "header over 100 MB"])
def test_real_process_prints_one_line(case: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(HEADER_CASES[case]())
    proc = subprocess.run([sys.executable, "-m", "habacli", "info", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr and str(path) in proc.stderr


# ----------------------------------------------------------------------------- length bytes are not magics
def _padded_to(n: int, data: bytes = BASE) -> bytes:
    """``data`` with its JSON header padded with spaces to exactly ``n`` bytes (still a valid artifact)."""
    header, payload = split(data)
    text = json.dumps(header).encode()
    assert len(text) <= n
    return struct.pack("<Q", n) + text + b" " * (n - len(text)) + payload


@pytest.mark.parametrize("modulus, residue", [(256, 128), (65536, 640)])
def test_header_length_that_looks_like_a_pickle_magic_loads(modulus: int, residue: int, tmp_path: Path) -> None:
    """Bytes 0-7 are a length: N % 256 == 128 starts the file with 0x80, N % 65536 == 640 with 0x80 0x02
    (pickle protocol 2); byte 8 is still '{', so the file is a safetensors artifact and must load."""
    from habacli.hub.transfer import sniff_safetensors

    n0 = len(json.dumps(split(BASE)[0]).encode())
    n = n0 + (residue - n0) % modulus
    data = _padded_to(n)
    assert data[0] == 0x80 and n % modulus == residue
    path = tmp_path / f"n{n}.safetensors"
    path.write_bytes(data)
    assert read_metadata(path)["ipc"] == read_metadata_bytes(BASE, tmp_path)["ipc"]
    load_artifact(path)
    assert sniff_safetensors(data[:16], len(data), str(path)) == n


def read_metadata_bytes(data: bytes, tmp_path: Path) -> dict:
    path = tmp_path / "base.safetensors"
    path.write_bytes(data)
    return read_metadata(path)
