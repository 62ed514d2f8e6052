"""`haba expand`: counts, pixels against the golden examples, loaders (datasets, torchvision),
hostile class names, overwrite rules, contact sheets and the CLI's one-line errors."""

from __future__ import annotations

import csv
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from habacli.artifact.codec import HabaArtifact, load_artifact, save_artifact
from habacli.artifact.expand import (
    METADATA_NAME,
    PARQUET_NAME,
    SAFETENSORS_NAME,
    class_folders,
    expand,
    sanitize_class_names,
    select_pairs,
    write_parquet,
)
from habacli.artifact.grid import grid_layout, render_grid
from habacli.cli import main
from habacli.errors import ConfigError
from habacli.networks.hallucinator import HallucinatorBank

EXAMPLES = Path(__file__).resolve().parents[1] / "formats" / "examples"
GOLDEN = ["fashion_haba_zca", "fashion_plain", "rgb_single_channel"]


def golden(name: str) -> tuple[Path, dict[str, torch.Tensor]]:
    return EXAMPLES / f"{name}.safetensors", load_file(str(EXAMPLES / f"{name}.expected.safetensors"))


def read_png(path: Path) -> np.ndarray:
    """[C, H, W] uint8 of a PNG written by expand."""
    a = np.asarray(Image.open(path))
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def tiny_artifact(
    names: list[str], *, bases_per_class: int = 2, k: int = 2, size: int = 8, soft: bool = False
) -> HabaArtifact:
    """A small valid artifact with arbitrary class names (3 channels, random bases)."""
    g = torch.Generator().manual_seed(0)
    c = len(names)
    spec = {
        "name": "custom-test",
        "channels": 3,
        "height": size,
        "width": size,
        "num_classes": c,
        "class_names": names,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
        "license": "test",
    }
    bases = torch.randn(c * bases_per_class, 3, size, size, generator=g)
    labels = torch.arange(c).repeat_interleave(bases_per_class)
    bank = HallucinatorBank(k, 3, 3, size, size, generator=g) if k else None
    logits = torch.randn(c * bases_per_class, c, generator=g) if soft else None
    return HabaArtifact.build(
        bases,
        labels,
        bank,
        spec,
        spec["mean"],
        spec["std"],
        objective="dm",
        objective_config={},
        ipc=bases_per_class,
        seed=0,
        soft_labels=logits,
    )


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


# ----------------------------------------------------------------------------- selection and counts
def test_select_pairs_all_and_per_basis():
    b, h = select_pairs(4, 3)
    assert b.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3] and h.tolist() == [0, 1, 2] * 4
    b, h = select_pairs(50, 5, per_basis=2, seed=7)
    assert b.numel() == 100
    pairs = h.view(50, 2)
    assert (pairs[:, 0] != pairs[:, 1]).all() and (pairs >= 0).all() and (pairs < 5).all()
    assert torch.equal(h, select_pairs(50, 5, per_basis=2, seed=7)[1])  # seeded
    assert not torch.equal(h, select_pairs(50, 5, per_basis=2, seed=8)[1])
    assert set(pairs.flatten().tolist()) == set(range(5))  # every hallucinator gets used
    b, h = select_pairs(3, 0)  # plain set: the bases themselves
    assert b.tolist() == [0, 1, 2] and h.tolist() == [-1, -1, -1]
    with pytest.raises(ConfigError, match="between 1 and 5"):
        select_pairs(4, 5, per_basis=6)


def test_imagefolder_counts_pixels_and_metadata(tmp_path):
    path, exp = golden("fashion_haba_zca")
    art = load_artifact(path)
    res = expand(path, tmp_path / "out", fmt="imagefolder")
    n_classes, k = len(art.spec["class_names"]), art.num_hallucinators
    assert res.num_images == art.bases.shape[0] * k == 60 and n_classes == 10
    pngs = sorted((tmp_path / "out").rglob("*.png"))
    assert len(pngs) == 60
    with open(tmp_path / "out" / METADATA_NAME, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["file_name", "label", "basis", "hallucinator"] and len(rows) == 60
    per_class = np.bincount([int(r["label"]) for r in rows], minlength=n_classes)
    assert (per_class == np.bincount(art.labels.numpy(), minlength=n_classes) * k).all()
    for r in rows:  # every PNG equals the spec's decoding of the golden file (within 1 level)
        b, h = int(r["basis"]), int(r["hallucinator"])
        ref = exp["images"][b * k + h].numpy().astype(int)
        got = read_png(tmp_path / "out" / r["file_name"]).astype(int)
        assert np.abs(got - ref).max() <= 1
        assert int(r["label"]) == int(exp["labels"][b * k + h])
        assert r["file_name"].split("/")[0] == res.class_dirs[int(r["label"])]


@pytest.mark.parametrize("name", ["fashion_plain", "rgb_single_channel"])
def test_safetensors_matches_golden(tmp_path, name):
    path, exp = golden(name)
    res = expand(path, tmp_path / "st", fmt="safetensors")
    t = load_file(str(tmp_path / "st" / SAFETENSORS_NAME))
    assert t["images"].dtype == torch.uint8 and t["labels"].dtype == torch.int64
    assert t["images"].shape == exp["images"].shape and res.num_images == exp["images"].shape[0]
    assert (t["images"].int() - exp["images"].int()).abs().max() <= 1
    assert torch.equal(t["labels"], exp["labels"])
    k = max(load_artifact(path).num_hallucinators, 1)
    assert torch.equal(t["basis"], torch.arange(t["labels"].numel()) // k)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "st" / SAFETENSORS_NAME), "pt") as f:
        names = json.loads(f.metadata()["class_names"])
    assert names == load_artifact(path).spec["class_names"]


def test_safetensors_expansion_is_byte_deterministic(tmp_path):
    """The same artifact always expands to the same bytes: metadata keys sorted (safetensors writes them in
    a random order; found by the kill-anywhere test comparing a resumed expansion with a reference)."""
    path, _ = golden("fashion_haba_zca")
    outs = [tmp_path / f"st{i}" / SAFETENSORS_NAME for i in range(4)]
    for out in outs:
        expand(path, out.parent, fmt="safetensors")
    data = [out.read_bytes() for out in outs]
    assert all(d == data[0] for d in data)
    (n,) = struct.unpack("<Q", data[0][:8])
    header = json.loads(data[0][8 : 8 + n])
    assert list(header["__metadata__"]) == sorted(header["__metadata__"])
    assert load_file(str(outs[0]))["images"].dtype == torch.uint8


def test_per_basis_expansion(tmp_path):
    path, exp = golden("fashion_haba_zca")
    res = expand(path, tmp_path / "pb", fmt="safetensors", per_basis=2, seed=3)
    t = load_file(str(tmp_path / "pb" / SAFETENSORS_NAME))
    assert res.num_images == 40 == t["images"].shape[0]
    pairs = t["hallucinator"].view(20, 2)
    assert (pairs[:, 0] != pairs[:, 1]).all()
    flat = t["basis"] * 3 + t["hallucinator"]
    assert (t["images"].int() - exp["images"][flat].int()).abs().max() <= 1


def test_soft_labels_are_carried(tmp_path):
    import datasets

    art = tiny_artifact(["a", "b", "c"], bases_per_class=2, k=2, soft=True)
    expand(art, tmp_path / "st", fmt="safetensors")
    t = load_file(str(tmp_path / "st" / SAFETENSORS_NAME))
    assert torch.equal(t["soft_labels"], art.soft_labels[t["basis"]])
    expand(art, tmp_path / "pq", fmt="parquet")
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "pq" / PARQUET_NAME), split="train")
    assert np.allclose(np.array(ds["soft_label"]), art.soft_labels[torch.tensor(ds["basis"])].numpy())


# ----------------------------------------------------------------------------- loaders
def test_imagefolder_loads_with_datasets_and_torchvision(tmp_path):
    import datasets
    from torchvision.datasets import ImageFolder

    path, exp = golden("fashion_haba_zca")
    expand(path, tmp_path / "if", fmt="imagefolder")
    ds = datasets.load_dataset("imagefolder", data_dir=str(tmp_path / "if"), split="train")
    assert len(ds) == 60 and set(ds.column_names) >= {"image", "label", "basis", "hallucinator"}
    for row in ds.select(range(0, 60, 7)):
        ref = exp["images"][row["basis"] * 3 + row["hallucinator"]].numpy().astype(int)
        assert np.abs(read_png_pil(row["image"]) - ref).max() <= 1
        assert row["label"] == int(exp["labels"][row["basis"] * 3])
    tv = ImageFolder(str(tmp_path / "if"))
    assert len(tv) == 60
    # Fashion-MNIST's names are not sorted, so folders carry an index: ImageFolder's ids = labels.
    for p, target in tv.samples:
        b = int(Path(p).stem.split("_")[0][1:])
        assert target == int(exp["labels"][b * 3])


def read_png_pil(img: Image.Image) -> np.ndarray:
    a = np.asarray(img).astype(int)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def test_parquet_has_hf_features(tmp_path):
    import datasets
    import pyarrow.parquet as pq

    path, exp = golden("rgb_single_channel")
    res = expand(path, tmp_path / "pq", fmt="parquet")
    file = tmp_path / "pq" / PARQUET_NAME
    assert res.files == (PARQUET_NAME,) and file.exists()
    assert b"huggingface" in pq.read_schema(file).metadata
    ds = datasets.load_dataset("parquet", data_files=str(file), split="train")
    assert isinstance(ds.features["image"], datasets.Image)
    assert ds.features["label"].names == load_artifact(path).spec["class_names"]
    assert len(ds) == 20
    for i in range(20):
        assert np.abs(read_png_pil(ds[i]["image"]) - exp["images"][i].numpy().astype(int)).max() <= 1
        assert ds[i]["label"] == int(exp["labels"][i])
    assert write_parquet(load_artifact(path), tmp_path / "x.parquet", per_basis=1) == 10


# ----------------------------------------------------------------------------- hostile names
HOSTILE = [
    "../../evil",
    "/etc/passwd",
    "a\\b",
    "nul\x00byte",
    ".hidden",
    "CON",
    "",
    "..",
    "Dup",
    "dup",
    "aux.txt",
    "tab\there",
    "   ",
    "x" * 300,
    "ok",
]


def test_sanitize_class_names():
    safe = sanitize_class_names(HOSTILE)
    assert len(safe) == len(HOSTILE)
    assert len({s.casefold() for s in safe}) == len(safe)
    for s in safe:
        assert s and not s.startswith((".", " ")) and not s.endswith((".", " "))
        assert not any(ch in s for ch in "/\\\x00\t:")
        assert s.split(".")[0].lower() not in {"con", "aux", "nul", "prn"}
        assert len(s) <= 110
    assert safe[-1] == "ok" and safe[8] == "Dup" and safe[9] == "dup_2"
    assert class_folders(["a", "b", "c"]) == ["a", "b", "c"]
    assert class_folders(["b", "a"]) == ["0_b", "1_a"]


def test_hostile_names_stay_inside_out(tmp_path):
    art = tiny_artifact(HOSTILE, bases_per_class=1, k=2)
    out = tmp_path / "sub" / "out"
    res = expand(art, out, fmt="imagefolder")
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == len(HOSTILE) * 2 + 1  # the PNGs and metadata.csv, nothing elsewhere
    root = out.resolve()
    assert all(root in p.resolve().parents for p in files)
    assert len(res.class_dirs) == len(set(res.class_dirs)) == len(HOSTILE)
    assert sorted(os.listdir(out)) == sorted([*res.class_dirs, METADATA_NAME])


# ----------------------------------------------------------------------------- overwrite, grid
def test_refuses_non_empty_out_unless_overwrite(tmp_path):
    path, _ = golden("fashion_plain")
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        expand(path, out, fmt="safetensors")
    assert (out / "keep.txt").exists()
    expand(path, out, fmt="safetensors", overwrite=True)
    assert sorted(os.listdir(out)) == [SAFETENSORS_NAME]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_grid_layout_and_cap(tmp_path):
    path, _ = golden("fashion_haba_zca")
    art = load_artifact(path)
    lay = grid_layout(art, max_columns=50)
    assert (lay.columns, lay.bases_shown, lay.note) == (6, 2, None)  # 2 bases/class x 3
    img = render_grid(art, max_columns=50, labels=False, scale=1)
    assert img.size == (2 + 6 * 14 + 6, 2 + 10 * 14)  # 12 px cells, 2 px padding, 6 px between bases
    capped = grid_layout(art, max_columns=4)
    assert capped.columns == 3 and capped.bases_shown == 1 and "first 1 of 2 bases" in capped.note
    res = expand(path, tmp_path / "g", fmt="safetensors", grid=True, max_grid_columns=4)
    assert res.grid is not None and Image.open(res.grid).size[0] > 3 * 12 and "first 1 of 2" in res.grid_note


# ----------------------------------------------------------------------------- CLI
def test_cli_expand_and_errors(tmp_path, capsys):
    path, _ = golden("fashion_plain")
    code, out, err = run_cli(["expand", str(path), "--out", str(tmp_path / "c"), "--format", "safetensors"], capsys)
    assert code == 0 and "10 images" in out
    code, out, err = run_cli(["expand", str(path), "--out", str(tmp_path / "c"), "-f", "safetensors"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--overwrite" in err
    code, out, err = run_cli(["expand", str(path), "--out", str(tmp_path / "d"), "--format", "parket"], capsys)
    assert code == 2 and err.count("\n") == 1 and "did you mean 'parquet'" in err
    code, out, err = run_cli(["expand", str(tmp_path / "nope.safetensors"), "--out", str(tmp_path / "e")], capsys)
    assert code == 2 and err.count("\n") == 1 and "no such file" in err
    code, out, err = run_cli(["expand", str(path), "--out", str(tmp_path / "f"), "--per-basis", "2"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--per-basis" in err
    assert not (tmp_path / "d").exists() and not (tmp_path / "f").exists()


def test_hostile_artifact_roundtrip_via_cli(tmp_path, capsys):
    art = tiny_artifact(["../x", "a/b"], bases_per_class=1, k=1)
    save_artifact(art, tmp_path / "a.safetensors")
    code, out, err = run_cli(
        ["expand", str(tmp_path / "a.safetensors"), "-o", str(tmp_path / "o"), "--grid", "--json"], capsys
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["num_images"] == 2 and doc["class_dirs"] == ["_x", "a_b"]
    assert (tmp_path / "o" / "grid.png").exists() and not (tmp_path / "x").exists()
