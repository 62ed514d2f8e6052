"""Artifact benchmarks: CLI start-up, `haba info`, and decoding a CIFAR-shaped artifact.

    python benchmarks/bench_artifact.py [--repeats 5]

Prints one line per figure (median of ``--repeats`` runs after one warm-up). Targets: `haba info` on a
small artifact < 0.5 s wall; decoding 100 bases x 5 hallucinators at 32x32x3 < 0.1 s on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import median_time  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SMALL = ROOT / "formats" / "examples" / "fashion_haba_zca.safetensors"


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def cifar_artifact(with_zca_rank: int | None):
    """100 random bases x 5 hallucinators at 32x32x3 (optionally a compact ZCA of the given rank)."""
    import torch

    from habacli.artifact.codec import HabaArtifact
    from habacli.networks.hallucinator import HallucinatorBank
    from habacli.transforms.zca import CompactZCA

    g = torch.Generator().manual_seed(0)
    spec = {"name": "cifar10", "channels": 3, "height": 32, "width": 32, "num_classes": 10,
            "class_names": [f"c{i}" for i in range(10)]}
    zca = None
    if with_zca_rank:
        basis, _ = torch.linalg.qr(torch.randn(3072, with_zca_rank, generator=g))
        zca = CompactZCA(torch.rand(3072, generator=g), basis.contiguous(), torch.rand(with_zca_rank, generator=g),
                         0.1, 0.33, (3, 32, 32), error_bound=0.001)
    return HabaArtifact.build(torch.randn(100, 3, 32, 32, generator=g), torch.arange(10).repeat_interleave(10),
                              HallucinatorBank(5, 3, 3, 32, 32, generator=g), spec, (0.0,) * 3, (1.0,) * 3, zca,
                              objective="mtt", objective_config={}, ipc=10, seed=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads for the in-process figures")
    args = ap.parse_args()
    r = args.repeats
    haba = [sys.executable, "-m", "habacli"]
    t = median_time(lambda: run([*haba, "--help"]), r)
    print(f"haba --help                 {t:.3f} s median, {t.best:.3f} s best  (subprocess, {r} runs)")
    t = median_time(lambda: run([*haba, "info", str(SMALL)]), r)
    print(f"haba info (small artifact)  {t:.3f} s median, {t.best:.3f} s best  (subprocess, {SMALL.name}, {r} runs)")
    import torch

    from habacli.artifact.codec import load_artifact, save_artifact

    torch.set_num_threads(args.threads)
    print(f"(in-process figures below use {args.threads} torch thread(s))")
    for rank in (None, 1000):
        art = cifar_artifact(rank)
        label = "no ZCA" if rank is None else f"compact ZCA rank {rank}/3072"
        t_px = median_time(lambda: art.decode(pixel=True), r)
        t_model = median_time(lambda: art.decode(pixel=False), r)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "cifar.safetensors"
            t_save = median_time(lambda: save_artifact(art, path), r)
            t_load = median_time(lambda: load_artifact(path), r)
            size = path.stat().st_size
        print(f"decode 100 bases x 5 hallucinators 32x32x3 ({label}): pixel {t_px * 1000:.1f} ms "
              f"(best {t_px.best * 1000:.1f}), model space {t_model * 1000:.1f} ms (best {t_model.best * 1000:.1f}); "
              f"save {t_save * 1000:.1f} ms, load+verify {t_load * 1000:.1f} ms, "
              f"{size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
