"""Generate the negative golden artifacts: malformed files, each with the one-line error a reader gives.

    python formats/examples/make_negative.py [--out formats/examples/negative]

Each case edits one positive golden (``<name>.safetensors`` beside this script) in exactly one way, keeping
everything else valid (the checksum is recomputed where the payload or document changes), and records in
``expected.json``: the file, the stage that must refuse it (``header``: ``haba info``; ``verify``: only
``haba info --verify``, which reads the payload; ``decode``: only decoding, e.g. ``haba expand``) and the
problem text haba's reader prints after ``<path>: `` (one line). No torch, no haba code: bytes and JSON only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent


def split(data: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def join(header: dict | str, payload: bytes) -> bytes:
    text = (header if isinstance(header, str) else json.dumps(header, separators=(",", ":"))).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + payload


def doc_text(
    golden: str, edit: Callable[[dict], None] | None = None, text: Callable[[str], str] | None = None
) -> bytes:
    """``golden`` with its metadata document edited as an object (``edit``) or as text (``text``)."""
    header, payload = split((HERE / f"{golden}.safetensors").read_bytes())
    doc = json.loads(header["__metadata__"]["haba"])
    if edit:
        edit(doc)
    body = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    header["__metadata__"]["haba"] = text(body) if text else body
    return join(header, payload)


def with_values(golden: str, tensor: str, edit: Callable[[bytearray], None], doc_edit=None) -> bytes:
    """``golden`` with bytes of one tensor edited, the checksum recomputed (only the intended problem remains)."""
    header, payload = split((HERE / f"{golden}.safetensors").read_bytes())
    begin, end = header[tensor]["data_offsets"]
    raw = bytearray(payload[begin:end])
    edit(raw)
    payload = payload[:begin] + bytes(raw) + payload[end:]
    doc = json.loads(header["__metadata__"]["haba"])
    doc["payload_sha256"] = hashlib.sha256(payload).hexdigest()
    if doc_edit:
        doc_edit(doc)
    header["__metadata__"]["haba"] = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return join(header, payload)


def f32(value: bytes) -> Callable[[bytearray], None]:
    def put(raw: bytearray) -> None:
        raw[0:4] = value

    return put


def dup_header_key() -> bytes:
    header, payload = split((HERE / "rgb_single_channel.safetensors").read_bytes())
    text = json.dumps(header, separators=(",", ":"))
    return join('{"labels":' + json.dumps(header["labels"]) + "," + text[1:], payload)


def unknown_dtype() -> bytes:
    header, payload = split((HERE / "rgb_single_channel.safetensors").read_bytes())
    header["labels"]["dtype"] = "I128"
    return join(header, payload)


def overflow(raw: bytearray) -> None:
    """Every basis value at the largest float32: finite in the file, infinite once de-normalised."""
    raw[:] = b"\xff\xff\x7f\x7f" * (len(raw) // 4)


CASES: list[tuple[str, str, Callable[[], bytes], str]] = [
    (
        "duplicate_document_key",
        "header",
        lambda: doc_text("rgb_single_channel", text=lambda t: '{"seed":7,' + t[1:]),
        "the 'haba' metadata has the key 'seed' twice (duplicate JSON keys are refused)",
    ),
    (
        "duplicate_tensor_entry",
        "header",
        dup_header_key,
        "header has the key 'labels' twice (duplicate JSON keys are refused)",
    ),
    (
        "nan_literal",
        "header",
        lambda: doc_text("rgb_single_channel", text=lambda t: t.replace('"learned_lr":null', '"learned_lr":NaN')),
        "the 'haba' metadata holds NaN, which is not JSON",
    ),
    (
        "created_month_13",
        "header",
        lambda: doc_text("rgb_single_channel", lambda d: d.update(created="2026-13-01T00:00:00Z")),
        "metadata created '2026-13-01T00:00:00Z' is not an RFC 3339 UTC time (YYYY-MM-DDTHH:MM:SSZ)",
    ),
    (
        "unknown_dtype",
        "header",
        unknown_dtype,
        "tensor 'labels': unknown dtype 'I128'",
    ),
    (
        "soft_labels_tensor_without_flag",
        "header",
        lambda: doc_text(
            "fashion_plain",
            lambda d: d.update(
                soft_labels=False, storage=dict(d["storage"], soft_labels=0, total=d["storage"]["bases"], ratio=1.0)
            ),
        ),
        "tensor 'soft_labels' is present but the metadata says soft_labels is false",
    ),
    (
        "negative_zca_eigenvalue",
        "verify",
        lambda: with_values("rgb_zca_soft", "zca.eigenvalues", f32(b"\x00\x00\x80\xbf")),  # -1.0
        "tensor 'zca.eigenvalues' holds a negative value (-1): a covariance has none",
    ),
    (
        "nan_in_bases",
        "verify",
        lambda: with_values("rgb_single_channel", "bases", f32(b"\x00\x00\xc0\x7f")),
        "tensor 'bases' contains NaN or Inf",
    ),
    (
        "label_out_of_range",
        "verify",
        lambda: with_values("rgb_single_channel", "labels", lambda r: r.__setitem__(slice(0, 8), struct.pack("<q", 5))),
        "labels out of range [0, 5)",
    ),
    (
        "decoding_overflows",
        "decode",
        lambda: with_values("rgb_single_channel", "bases", overflow),
        "decoding gives NaN or infinite pixel values (parameters overflow float32)",
    ),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "negative")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    expected = []
    for name, stage, make, problem in CASES:
        (args.out / f"{name}.safetensors").write_bytes(make())
        expected.append({"file": f"{name}.safetensors", "stage": stage, "error": problem})
    (args.out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(f"{len(expected)} negative examples in {args.out}")


if __name__ == "__main__":
    main()
