"""The golden examples against an independent reader written from the spec alone (numpy, no haba code),
against haba's own codec, and against the JSON Schema; and the generator's determinism."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
FORMATS = ROOT / "formats"
EXAMPLES = FORMATS / "examples"
NAMES = [
    "fashion_haba_zca",
    "fashion_plain",
    "rgb_single_channel",
    "rgb_zca_soft",
    "fashion_lowres_channel",
    "fashion_infer",
    "fashion_same",
]
VERSIONS = {"fashion_lowres_channel": "1.1", "fashion_infer": "1.2", "fashion_same": "1.3"}
NEGATIVE = EXAMPLES / "negative"
_NP = {"F32": np.float32, "I64": np.int64, "U8": np.uint8}


def read_safetensors(path: Path) -> tuple[dict[str, str], dict[str, np.ndarray], bytes]:
    """A minimal safetensors reader from the container rules (spec section 1)."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    payload = data[8 + n :]
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        dtype = np.dtype(_NP[e["dtype"]]).newbyteorder("<")
        tensors[name] = np.frombuffer(payload[b:end], dtype=dtype).reshape(e["shape"])
    return meta, tensors, payload


def spec_upsample(b: np.ndarray, height: int, width: int) -> np.ndarray:
    """Section 4 step 0 (format 1.1), the formula as written: bilinear, half-pixel centres, edge clamp."""

    def taps(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r = np.maximum((np.arange(size_out) + 0.5) * size_in / size_out - 0.5, 0.0)
        lo = np.floor(r).astype(int)
        return lo, np.minimum(lo + 1, size_in - 1), r - lo

    p0, p1, lam = taps(b.shape[2], height)
    q0, q1, mu = taps(b.shape[3], width)
    rows = b[:, :, p0] * (1 - lam)[:, None] + b[:, :, p1] * lam[:, None]
    return rows[:, :, :, q0] * (1 - mu) + rows[:, :, :, q1] * mu


def spec_decode(doc: dict, t: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Section 4, step by step, in float64."""
    bases, labels = t["bases"].astype(np.float64), t["labels"]
    ds = doc["dataset"]
    bases = spec_upsample(bases, ds["height"], ds["width"])  # a no-op for full-size bases
    n, k = bases.shape[0], doc["hallucinators"]["count"]
    if k == 0:
        y = bases[:, None]  # [n, 1, c, H, W]
    else:
        h = {
            name: t["hallucinators." + name].astype(np.float64)
            for name in ("enc_weight", "enc_bias", "scale", "shift", "dec_weight", "dec_bias")
        }
        s = doc["hallucinators"]["kernel_size"]
        # zero padding pi: 0 for the paper's network, (s - 1) / 2 for "haba-style-translator-same" (1.3)
        pi = (s - 1) // 2 if doc["hallucinators"]["architecture"] == "haba-style-translator-same" else 0
        full_h, full_w = bases.shape[2], bases.shape[3]
        bases = np.pad(bases, ((0, 0), (0, 0), (pi, pi), (pi, pi)))
        hh, ww = bases.shape[2] - s + 1, bases.shape[3] - s + 1
        e = np.zeros((n, k, h["enc_weight"].shape[1], hh, ww))
        for u in range(s):
            for v in range(s):
                e += np.einsum("nihw,koi->nkohw", bases[:, :, u : u + hh, v : v + ww], h["enc_weight"][:, :, :, u, v])
        e += h["enc_bias"][None, :, :, None, None]
        m = e * h["scale"][None] + h["shift"][None]
        c = h["dec_weight"].shape[2]
        y = np.zeros((n, k, c, bases.shape[2], bases.shape[3]))
        for u in range(s):
            for v in range(s):
                y[:, :, :, u : u + hh, v : v + ww] += np.einsum("nkihw,kio->nkohw", m, h["dec_weight"][:, :, :, u, v])
        y = y[:, :, :, pi : pi + full_h, pi : pi + full_w]  # the transposed conv's padding crops pi a side
        y += h["dec_bias"][None, :, :, None, None]
    y = y.reshape(n * max(k, 1), *y.shape[2:])
    if doc["zca"] is not None:
        z = y.reshape(len(y), -1)
        u = t["zca.basis"].astype(np.float64)
        root = np.sqrt(t["zca.eigenvalues"].astype(np.float64) + doc["zca"]["eps"])
        tail = doc["zca"]["tail_scale"]
        coef = z @ u
        x = t["zca.mean"].astype(np.float64) + (coef * root) @ u.T + tail * (z - coef @ u.T)
        y = x.reshape(y.shape)
    mean = np.array(doc["normalization"]["mean"])[None, :, None, None]
    std = np.array(doc["normalization"]["std"])[None, :, None, None]
    labels = np.repeat(labels, max(k, 1))
    comp = doc.get("compensators")
    if comp is not None:  # format 1.2, section 12.3.2: clip(natural[k, c] + compensator[k, m]) in (k, m, c) order
        values, subset = t["compensators.values"].astype(np.float64), t["compensators.subset"]
        nc = doc["dataset"]["num_classes"]
        lo, hi = (0 - mean[0]) / std[0], (1 - mean[0]) / std[0]
        extra, extra_labels = [], []
        for kk in range(comp["subsets"]):
            for m in range(comp["per_subset"]):
                for c in range(nc):
                    (i,) = np.nonzero((subset == kk) & (t["labels"] == c))[0]
                    extra.append(np.minimum(np.maximum(y[i] + values[kk, m], lo), hi))
                    extra_labels.append(c)
        y = np.concatenate([y, np.stack(extra)])
        labels = np.concatenate([labels, np.array(extra_labels, dtype=labels.dtype)])
    p = np.clip(y * std + mean, 0.0, 1.0)
    return np.floor(255 * p + 0.5).astype(np.uint8), labels


@pytest.mark.parametrize("name", NAMES)
def test_independent_reader_matches_reference(name: str) -> None:
    path = EXAMPLES / f"{name}.safetensors"
    assert path.stat().st_size < 100_000
    meta, tensors, payload = read_safetensors(path)
    assert meta["format"] == "haba"
    assert meta["format_version"] == VERSIONS.get(name, "1.0")
    doc = json.loads(meta["haba"])
    assert hashlib.sha256(payload).hexdigest() == doc["payload_sha256"]
    _, expected, _ = read_safetensors(EXAMPLES / f"{name}.expected.safetensors")
    images, labels = spec_decode(doc, tensors)
    assert (
        images.shape
        == expected["images"].shape
        == (
            doc.get("num_instances", doc["num_images"]),
            doc["dataset"]["channels"],
            doc["dataset"]["height"],
            doc["dataset"]["width"],
        )
    )
    assert np.array_equal(labels, expected["labels"])
    if "instance_soft_labels" in tensors:  # section 12.4: the target is softmax(logits / T)
        z = tensors["instance_soft_labels"].astype(np.float64) / doc["instance_soft_labels"]["temperature"]
        q = np.exp(z - z.max(1, keepdims=True))
        np.testing.assert_allclose(q / q.sum(1, keepdims=True), expected["targets"], atol=1e-6)
    diff = np.abs(images.astype(int) - expected["images"].astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    assert expected["images"].std() > 10  # real image content, not a constant


def test_an_older_reader_sees_the_natural_images_with_hard_labels() -> None:
    """Section 13: a 1.0/1.1 reader ignores the 1.2 keys and tensors and decodes the num_images natural images
    (the first instances of the reference decoding) with their hard labels; its storage checks still hold."""
    meta, tensors, _ = read_safetensors(EXAMPLES / "fashion_infer.safetensors")
    doc = json.loads(meta["haba"])
    old_doc = {k: v for k, v in doc.items() if k not in ("compensators", "instance_soft_labels", "evaluation_recipe")}
    old_tensors = {k: v for k, v in tensors.items() if k in ("bases", "labels")}
    images, labels = spec_decode(old_doc, old_tensors)
    _, expected, _ = read_safetensors(EXAMPLES / "fashion_infer.expected.safetensors")
    n = doc["num_images"]
    assert images.shape[0] == n == 12 and doc["soft_labels"] is False
    assert np.array_equal(labels, expected["labels"][:n])
    assert np.abs(images.astype(int) - expected["images"][:n].astype(int)).max() <= 1
    assert doc["storage"]["bases"] == tensors["bases"].size and doc["storage"]["total"] == tensors["bases"].size


@pytest.mark.parametrize("name", NAMES)
def test_haba_codec_matches_reference(name: str) -> None:
    import torch

    from habacli.artifact.codec import load_artifact, read_metadata

    art = load_artifact(EXAMPLES / f"{name}.safetensors")
    _, expected, _ = read_safetensors(EXAMPLES / f"{name}.expected.safetensors")
    images, labels = art.decode(pixel=True)
    u8 = torch.floor(images.double() * 255 + 0.5).to(torch.uint8).numpy()
    assert np.abs(u8.astype(int) - expected["images"].astype(int)).max() <= 1
    assert np.array_equal(labels.numpy(), expected["labels"])
    assert read_metadata(EXAMPLES / f"{name}.safetensors") == art.to_document()


@pytest.mark.parametrize("name", NAMES)
def test_documents_follow_the_json_schema(name: str) -> None:
    schema = json.loads((FORMATS / "haba-artifact-v1.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    meta, _, _ = read_safetensors(EXAMPLES / f"{name}.safetensors")
    doc = json.loads(meta["haba"])
    jsonschema.validate(doc, schema)
    assert meta["haba"] == json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    broken = dict(doc, hallucinators={"count": 2})  # K >= 1 needs the architecture
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
    with pytest.raises(jsonschema.ValidationError):  # month 13
        jsonschema.validate(dict(doc, created="2026-13-01T00:00:00Z"), schema)


def test_examples_cover_the_spec_cases() -> None:
    docs = {n: json.loads(read_safetensors(EXAMPLES / f"{n}.safetensors")[0]["haba"]) for n in NAMES}
    zca = docs["fashion_haba_zca"]["zca"]
    assert docs["fashion_haba_zca"]["hallucinators"]["count"] == 3 and 0 < zca["rank"] < zca["dim"]
    assert zca["error_bound"] <= zca["tolerance"] == pytest.approx(0.5 / 255)
    assert docs["fashion_plain"]["hallucinators"]["count"] == 0 and docs["fashion_plain"]["zca"] is None
    assert docs["fashion_plain"]["soft_labels"] is True
    rgb = docs["rgb_single_channel"]
    assert rgb["bases"]["channels"] == 1 and rgb["dataset"]["channels"] == 3
    z3 = docs["rgb_zca_soft"]  # ZCA over 3 channels on top of a non-trivial mean/std, and soft labels
    assert z3["dataset"]["channels"] == 3 and 0 < z3["zca"]["rank"] < z3["zca"]["dim"] == 192
    assert len(set(z3["normalization"]["mean"])) == 3 and all(s != 1 for s in z3["normalization"]["std"])
    assert z3["soft_labels"] is True and z3["hallucinators"]["count"] == 2
    inf = docs["fashion_infer"]  # format 1.2: compensators, two unpaired bases, instance soft labels, a recipe
    assert inf["compensators"]["subsets"] == 1 and inf["compensators"]["per_subset"] == 2
    assert inf["num_instances"] == 12 + 2 * 10 and inf["bases"]["count"] == 12 and inf["soft_labels"] is False
    assert inf["storage"]["compensators"] == 2 * 144 and inf["storage"]["instance_soft_labels"] == 32 * 10
    assert inf["evaluation_recipe"]["loss"] == "kl" and inf["instance_soft_labels"]["temperature"] == 30
    low = docs["fashion_lowres_channel"]  # format 1.1: low-resolution bases, per-channel modulation
    assert (low["bases"]["height"], low["bases"]["width"]) == (6, 6) < (low["dataset"]["height"], 12)
    assert low["hallucinators"]["modulation"] == "channel" and low["storage"]["hallucinators"] == 2 * 22
    same = docs["fashion_same"]  # format 1.3: zero-padded hallucinators, maps of the image size
    assert same["hallucinators"]["architecture"] == "haba-style-translator-same"
    assert same["storage"]["hallucinators"] == 2 * (9 + 1 + 2 * 144 + 9 + 1)


def _negative_cases() -> list[dict]:
    return json.loads((NEGATIVE / "expected.json").read_text())


@pytest.mark.parametrize("case", _negative_cases(), ids=lambda c: c["file"].removesuffix(".safetensors"))
def test_negative_example_gives_its_one_line_error(case: dict) -> None:
    """Each malformed golden passes the stages before its own and is refused at its stage with exactly the
    recorded one-line problem."""
    from habacli.artifact.codec import load_artifact
    from habacli.artifact.header import read_header
    from habacli.errors import ArtifactError

    path = NEGATIVE / case["file"]
    stages = ["header", "verify", "decode"]
    steps = {
        "header": lambda: read_header(path),
        "verify": lambda: load_artifact(path, verify=True),
        "decode": lambda: load_artifact(path, verify=True).decode(pixel=True),
    }
    for stage in stages[: stages.index(case["stage"])]:
        steps[stage]()  # the earlier stages accept it
    with pytest.raises(ArtifactError) as err:
        steps[case["stage"]]()
    assert err.value.problem == case["error"] and "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["decoding_overflows", "negative_zca_eigenvalue"])
def test_expand_writes_no_image_from_a_broken_artifact(name: str, tmp_path: Path) -> None:
    from habacli.artifact.expand import expand
    from habacli.errors import ArtifactError

    with pytest.raises(ArtifactError) as err:
        expand(NEGATIVE / f"{name}.safetensors", tmp_path / "out", fmt="imagefolder")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []


def test_negative_examples_cover_the_edges() -> None:
    names = {c["file"].removesuffix(".safetensors") for c in _negative_cases()}
    assert {"duplicate_document_key", "negative_zca_eigenvalue", "created_month_13", "decoding_overflows"} <= names
    assert sorted(p.name for p in NEGATIVE.glob("*.safetensors")) == sorted(f"{n}.safetensors" for n in names)


def test_negative_generator_reproduces_the_files(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(EXAMPLES / "make_negative.py"), "--out", str(tmp_path)], check=True, capture_output=True
    )
    for p in NEGATIVE.iterdir():
        assert (tmp_path / p.name).read_bytes() == p.read_bytes(), p.name


def test_readme_lists_the_shipped_files() -> None:
    text = (EXAMPLES / "README.md").read_text()
    for name in NAMES:
        path = EXAMPLES / f"{name}.safetensors"
        sha = json.loads(read_safetensors(path)[0]["haba"])["payload_sha256"]
        assert f"| `{name}.safetensors` | {path.stat().st_size} |" in text and sha[:16] in text


@pytest.mark.slow  # loads all of Fashion-MNIST and refits the ZCA (~5-15 s)
def test_generator_is_deterministic(tmp_path: Path, fashion_mnist_dir: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "make_examples.py"),
            "--data-dir",
            str(fashion_mnist_dir),
            "--out",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    for name in NAMES:
        for suffix in (".safetensors", ".expected.safetensors"):
            new, old = tmp_path / (name + suffix), EXAMPLES / (name + suffix)
            if new.read_bytes() == old.read_bytes():
                continue
            # another CPU may round the last float bits differently: structure must still agree
            meta_new, t_new, _ = read_safetensors(new)
            meta_old, t_old, _ = read_safetensors(old)
            assert t_new.keys() == t_old.keys()
            for key in t_new:
                np.testing.assert_allclose(
                    t_new[key].astype(float),
                    t_old[key].astype(float),
                    atol=1.0 if t_new[key].dtype == np.uint8 else 1e-4,
                )
            if "haba" in meta_new:
                d_new, d_old = json.loads(meta_new["haba"]), json.loads(meta_old["haba"])
                for d in (d_new, d_old):
                    d.pop("payload_sha256")
                    d["zca"] and d["zca"].pop("error_bound") and d["zca"].pop("tail_scale")
                assert d_new == d_old
    assert (tmp_path / "README.md").read_text().count(".safetensors` |") == len(NAMES)
