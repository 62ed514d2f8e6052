"""Convert haba expert trajectories into the official MTT replay-buffer layout.

haba (habacli/experts/store.py): one ``expert_NNNNN.safetensors`` per expert, tensor
``trajectory`` float32 [epochs + 1, P]; row 0 = initialisation, row e = after epoch e; each row
is the flat parameter vector in ``named_parameters()`` order (names/shapes in manifest "params").

MTT (buffer.py / distill.py): ``{buffer_path}/CIFAR10/ConvNet/replay_buffer_0.pt`` = list of
experts, each a list of epochs (row 0 = initialisation), each a list of parameter tensors in the
order of ``teacher_net.parameters()``; distill.py flattens and concatenates them in that order and
feeds the result to ReparamModule, whose flat_param uses named_modules() x named_parameters().

Usage (ROOT = the scratch folder, default /work/mttref; its venv python, so the official utils import):
    ROOT=/work/mttref $ROOT/venv/bin/python convert.py [--experts ROOT/experts] [--out ROOT/buffers]
"""

import argparse
import json
import os
import sys
from pathlib import Path

import torch
from safetensors import safe_open

HERE = Path(os.environ.get("ROOT", "/work/mttref"))  # the scratch folder of README.md, not this one
sys.path.insert(0, str(HERE / "mtt"))


def reference_layout():
    """(names, shapes) of the official CIFAR10 ConvNet (instancenorm, width 128, depth 3)."""
    from reparam_module import ReparamModule
    from utils import get_network  # official code

    net = get_network("ConvNet", 3, 10, (32, 32), dist=False)
    names = [n for n, _ in net.named_parameters()]
    shapes = [tuple(p.shape) for p in net.parameters()]
    # the order ReparamModule uses for flat_param must be the same as parameters()
    rep = ReparamModule(get_network("ConvNet", 3, 10, (32, 32), dist=False))
    rep_names = [f"{mn}.{n}" if mn else n for mn, n in rep._param_infos]
    rep_names = [n[len("module.") :] if n.startswith("module.") else n for n in rep_names]
    assert rep_names == names, (rep_names, names)
    assert [tuple(s) for s in rep._param_shapes] == shapes
    norms = [type(m).__name__ for m in net.features if "Norm" in type(m).__name__]
    return names, shapes, norms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--experts", default=str(HERE / "experts"))
    ap.add_argument("--out", default=str(HERE / "buffers"))
    ap.add_argument("--dataset", default="CIFAR10")
    ap.add_argument("--model", default="ConvNet")
    args = ap.parse_args()

    manifest = json.loads((Path(args.experts) / "manifest.json").read_text())
    hnames = [n for n, _ in manifest["params"]]
    hshapes = [tuple(s) for _, s in manifest["params"]]
    print(
        f"haba experts: dataset={manifest['dataset']} model={manifest['model']} zca={manifest.get('zca')} "
        f"zca_eps={manifest.get('zca_eps')} epochs={manifest['epochs']} num={manifest['num_experts']} "
        f"P={manifest['num_params']} amp={manifest.get('amp')}"
    )

    rnames, rshapes, norms = reference_layout()
    print(f"reference ConvNet norm layers: {norms}")
    print(f"{'#':>2} {'haba name':22} {'haba shape':18} {'ref name':22} {'ref shape':18}")
    ok = len(hnames) == len(rnames)
    for i in range(max(len(hnames), len(rnames))):
        hn, hs = (hnames[i], hshapes[i]) if i < len(hnames) else ("-", ())
        rn, rs = (rnames[i], rshapes[i]) if i < len(rnames) else ("-", ())
        same = hs == rs and hn == rn
        ok &= same
        print(f"{i:>2} {hn:22} {str(hs):18} {rn:22} {str(rs):18} {'ok' if same else 'MISMATCH'}")
    if not ok:
        sys.exit("layouts differ: not converting")

    numels = [int(torch.Size(s).numel()) for s in rshapes]
    buffer = []
    for e in sorted(manifest["experts"], key=lambda e: e["index"]):
        with safe_open(str(Path(args.experts) / e["file"]), "pt") as f:
            meta = json.loads(f.metadata()["haba_experts"])
            assert [n for n, _ in meta["params"]] == hnames
            traj = f.get_tensor("trajectory").to(torch.float32)
        assert traj.shape[1] == sum(numels), (traj.shape, sum(numels))
        epochs = []
        for row in traj:
            epochs.append([t.reshape(s).clone() for t, s in zip(torch.split(row, numels), rshapes)])
        buffer.append(epochs)
        print(
            f"expert {e['index']}: {traj.shape[0]} rows (init + {traj.shape[0] - 1} epochs), "
            f"test acc per row {e.get('test_accuracy')}"
        )

    out_dir = Path(args.out) / args.dataset / args.model
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "replay_buffer_0.pt"
    torch.save(buffer, path)

    # round trip: the reference's own flattening equals haba's row
    back = torch.load(path)
    for e, traj_e in zip(back, buffer):
        for a, b in zip(e, traj_e):
            assert torch.equal(torch.cat([p.reshape(-1) for p in a]), torch.cat([p.reshape(-1) for p in b]))
    first = json.loads(json.dumps(manifest["experts"][0]))
    with safe_open(str(Path(args.experts) / first["file"]), "pt") as f:
        traj = f.get_tensor("trajectory")
    for r in range(traj.shape[0]):
        assert torch.equal(torch.cat([p.reshape(-1) for p in back[0][r]]), traj[r].float())
    print(
        f"wrote {path} ({os.path.getsize(path)} bytes): {len(back)} expert(s) x {len(back[0])} rows x "
        f"{len(back[0][0])} tensors; flat rows equal haba's trajectory rows"
    )


if __name__ == "__main__":
    main()
