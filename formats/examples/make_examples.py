"""Generate the golden haba artifact examples and their reference decodings, deterministically.

    python formats/examples/make_examples.py [--data-dir /usr/share/datasets/fashion-mnist] [--out DIR]

Inputs: the real Fashion-MNIST training set (IDX files). Everything else is seeded; ``created`` and the
library version are fixed, so the same machine regenerates identical bytes (another CPU may differ in
the last float bits of the whitening and hallucinator outputs, never in structure).
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save

from habacli.artifact import HabaArtifact, save_artifact
from habacli.data.classes import FASHION_MNIST_NAMES
from habacli.infer.train import InferRecipe
from habacli.networks.hallucinator import HallucinatorBank
from habacli.transforms.zca import ZCA

CREATED = "2026-01-01T00:00:00Z"
VERSION = "0.1.0"
FASHION_CLASSES = list(FASHION_MNIST_NAMES)
HERE = Path(__file__).resolve().parent


def fashion_train(data_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST train images (float [60000, 1, 28, 28] in [0, 1]) and labels."""
    with gzip.open(data_dir / "train-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(data_dir / "train-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    return torch.from_numpy(x.astype(np.float32) / 255.0), torch.from_numpy(y.astype(np.int64))


def first_per_class(y: torch.Tensor, classes: int, per_class: int) -> torch.Tensor:
    """Indices of the first ``per_class`` images of each class, class-major."""
    return torch.cat([torch.nonzero(y == c)[:per_class, 0] for c in range(classes)])


def perturbed_bank(
    num: int,
    cin: int,
    cout: int,
    size: int,
    g: torch.Generator,
    modulation: str = "pixel",
    init: str = "official",
    padding: str = "valid",
) -> HallucinatorBank:
    """A seeded bank whose scale and shift are moved off their init, so every parameter matters."""
    bank = HallucinatorBank(num, cin, cout, size, size, generator=g, modulation=modulation, init=init, padding=padding)
    with torch.no_grad():
        bank.scale.add_(0.3 * torch.randn(bank.scale.shape, generator=g))
        bank.shift.add_(0.2 * torch.randn(bank.shift.shape, generator=g))
    return bank


def spec(name: str, channels: int, size: int, class_names: list[str]) -> dict:
    return {
        "name": name,
        "channels": channels,
        "height": size,
        "width": size,
        "num_classes": len(class_names),
        "class_names": class_names,
    }


def examples(x: torch.Tensor, y: torch.Tensor) -> dict[str, HabaArtifact]:
    """The five example artifacts."""
    g = torch.Generator().manual_seed(20221016)
    out = {}

    # 1. factorised, ZCA, 12x12 Fashion-MNIST (center 24x24 crop, 2x2 mean pool): small enough to ship.
    x12 = F.avg_pool2d(x[:, :, 2:26, 2:26], 2)
    zca = ZCA.fit(x12, eps=0.1)
    idx = first_per_class(y, 10, 2)
    bases = zca.apply(x12[idx]) + 0.3 * torch.randn(len(idx), 1, 12, 12, generator=g)
    out["fashion_haba_zca"] = HabaArtifact.build(
        bases,
        y[idx],
        perturbed_bank(3, 1, 1, 12, g),
        spec("fashion_mnist-12px", 1, 12, FASHION_CLASSES),
        (0.0,),
        (1.0,),
        zca,
        objective="mtt",
        objective_config={
            "syn_steps": 10,
            "expert_epochs": 2,
            "max_start_epoch": 2,
            "lr_img": 100.0,
            "lr_style": 100.0,
            "lambda_cos": 0.1,
            "hallucinators": 3,
        },
        ipc=2,
        seed=0,
        learned_lr=0.0123,
        created=CREATED,
        library_version=VERSION,
    )

    # 2. plain (K = 0), mean/std normalisation, no ZCA, soft labels and an evaluation record.
    idx = first_per_class(y, 10, 1)
    bases = (x[idx] - 0.2861) / 0.3530
    soft = torch.randn(10, 10, generator=g) + 4.0 * F.one_hot(y[idx], 10)
    out["fashion_plain"] = HabaArtifact.build(
        bases,
        y[idx],
        None,
        spec("fashion_mnist", 1, 28, FASHION_CLASSES),
        (0.2861,),
        (0.3530,),
        None,
        objective="dm",
        objective_config={"iterations": 0, "init": "real"},
        ipc=1,
        seed=1,
        soft_labels=soft,
        extra={
            "evaluation": {
                "convnet": {"mean": 0.5, "std": 0.0, "runs": 1, "accuracies": [0.5], "epochs": 0, "lr": 0.01}
            }
        },
        created=CREATED,
        library_version=VERSION,
    )

    # 3. RGB dataset with single-channel bases (c_b = 1 -> c = 3), per-channel mean/std, no ZCA.
    x8 = F.avg_pool2d(x[:, :, 2:26, 2:26], 3)
    idx = first_per_class(y, 5, 2)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
    bases = (x8[idx] - 0.48) / 0.2
    out["rgb_single_channel"] = HabaArtifact.build(
        bases,
        y[idx],
        perturbed_bank(2, 1, 3, 8, g),
        spec("example-rgb-8px", 3, 8, [f"c{i}" for i in range(5)]),
        mean,
        std,
        None,
        objective="dsa",
        objective_config={"single_channel": True},
        ipc=1,
        seed=2,
        created=CREATED,
        library_version=VERSION,
    )

    # 4. RGB, ZCA with 3 channels on top of a non-trivial per-channel mean/std (decoding order: inverse ZCA,
    #    then de-normalise), K = 2 hallucinators on full-channel bases, and soft labels.
    rgb = torch.cat([x8, 0.6 * x8 + 0.2 * x8.roll(1, dims=-1), 1.0 - x8], dim=1)[:5000]
    mean, std = (0.30, 0.25, 0.70), (0.35, 0.30, 0.40)
    norm = (rgb - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    zca3 = ZCA.fit(norm, eps=0.1)
    idx = first_per_class(y[:5000], 4, 2)
    bases = zca3.apply(norm[idx]) + 0.2 * torch.randn(len(idx), 3, 8, 8, generator=g)
    soft = torch.randn(len(idx), 4, generator=g) + 3.0 * F.one_hot(y[idx], 4)
    out["rgb_zca_soft"] = HabaArtifact.build(
        bases,
        y[idx],
        perturbed_bank(2, 3, 3, 8, g),
        spec("example-rgb-zca-8px", 3, 8, [f"c{i}" for i in range(4)]),
        mean,
        std,
        zca3,
        objective="dsa",
        objective_config={"note": "golden: zca c=3, mean/std, soft labels"},
        ipc=2,
        seed=3,
        soft_labels=soft,
        created=CREATED,
        library_version=VERSION,
    )

    # 5. format 1.1: low-resolution bases (6x6 for 12x12 images, upsampled bilinearly before the
    #    hallucinators) and per-channel modulation, K = 2, mean/std normalisation.
    idx = first_per_class(y, 10, 2)
    bases = (F.avg_pool2d(x12[idx], 2) - 0.2861) / 0.3530 + 0.3 * torch.randn(len(idx), 1, 6, 6, generator=g)
    out["fashion_lowres_channel"] = HabaArtifact.build(
        bases,
        y[idx],
        perturbed_bank(2, 1, 1, 12, g, modulation="channel", init="identity"),
        spec("fashion_mnist-12px", 1, 12, FASHION_CLASSES),
        (0.2861,),
        (0.3530,),
        None,
        objective="dm",
        objective_config={"base_scale": 2, "hallucinator_modulation": "channel"},
        ipc=1,
        seed=4,
        created=CREATED,
        library_version=VERSION,
    )

    # 6. format 1.2 (INFER): K = 1 subset of one natural 12x12 image per class, M = 2 compensators, two more
    #    bases outside any subset (subset -1), instance soft labels at T = 30 and an evaluation recipe.
    idx = torch.cat([first_per_class(y, 10, 1), first_per_class(y, 2, 2)[1::2]])
    bases = (x12[idx] - 0.2861) / 0.3530 + 0.1 * torch.randn(
        len(idx), 1, 12, 12, generator=g
    )  # off the grey-level ties
    comp = 0.8 * torch.randn(1, 2, 1, 12, 12, generator=g)
    soft = 2.0 * torch.randn(12 + 20, 10, generator=g)
    recipe = {**InferRecipe(epochs=300).to_dict(), "network": "convnet"}
    out["fashion_infer"] = HabaArtifact.build(
        bases,
        y[idx],
        None,
        spec("fashion_mnist-12px", 1, 12, FASHION_CLASSES),
        (0.2861,),
        (0.3530,),
        None,
        objective="infer",
        objective_config={"subsets": 1, "teachers": ["t0", "t1"]},
        ipc=2,
        seed=5,
        created=CREATED,
        library_version=VERSION,
        compensators=comp,
        compensator_subset=torch.tensor([0] * 10 + [-1, -1]),
        compensator_info={"teachers": ["t0", "t1"], "config": {"iterations": 0}},
        instance_soft_labels=soft,
        soft_label_temperature=30.0,
        soft_label_info={"source": "golden: seeded random logits"},
        evaluation_recipe=recipe,
    )

    # 7. format 1.3: same-padded hallucinators ("haba-style-translator-same"), K = 2, near-identity and then
    #    perturbed, full-size 12x12 bases with strokes on the border (the part a valid encoder crops).
    idx = first_per_class(y, 10, 3)[2::3]
    bases = (x12[idx] - 0.2861) / 0.3530 + 0.1 * torch.randn(len(idx), 1, 12, 12, generator=g)
    out["fashion_same"] = HabaArtifact.build(
        bases,
        y[idx],
        perturbed_bank(2, 1, 1, 12, g, init="identity", padding="same"),
        spec("fashion_mnist-12px", 1, 12, FASHION_CLASSES),
        (0.2861,),
        (0.3530,),
        None,
        objective="dm",
        objective_config={"hallucinator_padding": "same", "hallucinator_init": "identity"},
        ipc=1,
        seed=6,
        created=CREATED,
        library_version=VERSION,
    )
    return out


def reference_decoding(art: HabaArtifact) -> dict[str, torch.Tensor]:
    """The spec's 8-bit images (floor(255 p + 0.5)) and labels, in instance order (basis-major, then the
    compensated instances); with instance soft labels also ``targets`` = softmax(logits / T)."""
    images, labels = art.decode(pixel=True)
    out = {
        "images": torch.floor(images.double() * 255 + 0.5).to(torch.uint8).contiguous(),
        "labels": labels.contiguous(),
    }
    if art.instance_soft_labels is not None and art.soft_label_temperature is not None:
        t = art.soft_label_temperature
        out["targets"] = torch.softmax(art.instance_soft_labels.double() / t, dim=1).float().contiguous()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()
    torch.set_num_threads(1)  # fixed reduction order
    x, y = fashion_train(args.data_dir)
    rows = []
    for name, art in examples(x, y).items():
        path = save_artifact(art, args.out / f"{name}.safetensors")
        ref = reference_decoding(art)
        # one key only: safetensors writes metadata in hash order, which varies between processes
        meta = {"about": f"reference decoding of {path.name}: u8 = floor(255 * clamp(p, 0, 1) + 0.5)"}
        (args.out / f"{name}.expected.safetensors").write_bytes(save(ref, metadata=meta))
        doc = art.to_document()
        zca = doc["zca"]
        rows.append(
            f"| `{name}.safetensors` | {path.stat().st_size} | {doc['dataset']['channels']}x"
            f"{doc['dataset']['height']}x{doc['dataset']['width']} | {doc['bases']['count']} x "
            f"{doc['bases']['channels']} ch | {doc['hallucinators']['count']} | {doc['num_images']} | "
            + (f"rank {zca['rank']}/{zca['dim']}, bound {zca['error_bound'] * 255:.3f}/255" if zca else "none")
            + f" | `{art.payload_sha256[:16]}...` |"
        )
        print(name, path.stat().st_size, "bytes", json.dumps(doc["storage"]))
    readme = [
        "# Golden haba artifacts",
        "",
        "Generated by `python formats/examples/make_examples.py` (do not edit by hand). Each",
        "`<name>.safetensors` is a haba artifact (v1.0; `fashion_lowres_channel` v1.1; `fashion_infer` v1.2; `fashion_same` v1.3); `<name>.expected.safetensors` holds its decoding",
        "(`images`: U8 [M, C, H, W], `labels`: I64 [M], basis-major, then the compensated instances of a 1.2 file;",
        "`targets`: F32 [M, C] = softmax(instance_soft_labels / T) when the file has instance soft labels), computed as in",
        "[the spec](../haba-artifact-v1.md) sections 4 and 12.3. A conforming reader matches every value within 1 level.",
        "",
        "| file | bytes | image | bases | K | instances | ZCA | payload SHA-256 |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "`negative/` holds malformed artifacts, generated from these by `python formats/examples/make_negative.py`;",
        "`negative/expected.json` gives, for each, the stage that must refuse it (`header`: a header-only reader",
        "such as `haba info`; `verify`: a reader that loads the payload, `haba info --verify`; `decode`: decoding,",
        "`haba expand`) and the one-line problem haba prints after `<path>: `.",
        "",
    ]
    (args.out / "README.md").write_text("\n".join(readme))


if __name__ == "__main__":
    main()
