"""`haba info`: what an artifact holds and what it costs, read from its header (torch is not imported)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from habacli.cli.options import JsonOption


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _count(n: int) -> str:
    return f"{n:,}"


def _rows(doc: dict[str, Any], info: Any) -> list[tuple[str, str]]:
    ds, b, h, st, z = doc["dataset"], doc["bases"], doc["hallucinators"], doc["storage"], doc["zca"]
    k = h["count"]
    per_class = b["count"] / ds["num_classes"]
    rows = [
        ("file", f"{info.source} ({_bytes(info.file_bytes)}, haba format {info.metadata['format_version']})"),
        ("dataset", f"{ds['name']}: {ds['channels']}x{ds['height']}x{ds['width']}, {ds['num_classes']} classes"),
        (
            "objective",
            f"{doc['objective']['name']}"
            + (
                " + HaBa"
                if k
                else " (natural images + compensators)"
                if doc.get("compensators")
                else " (plain, not factorised)"
            ),
        ),
        ("ipc", str(doc["ipc"])),
        (
            "bases",
            f"{b['count']} x {b['channels']} channel(s) ({per_class:g} per class)"
            + (
                f", {b.get('height', ds['height'])}x{b.get('width', ds['width'])} upsampled to the image size"
                if (b.get("height", ds["height"]), b.get("width", ds["width"])) != (ds["height"], ds["width"])
                else ""
            ),
        ),
        (
            "hallucinators",
            f"{k} x {h['architecture']} ({h['kernel_size']}x{h['kernel_size']}, {h['in_channels']}->"
            f"{h['mid_channels']}->{h['out_channels']} channels"
            + (", per-channel scale and shift)" if h.get("modulation", "pixel") == "channel" else ")")
            if k
            else "0 (identity)",
        ),
        ("images", f"{doc['num_images']} decoded ({b['count']} bases x {max(k, 1)})"),
        (
            "storage",
            f"{_count(st['total'])} values = {_count(st['bases'])} bases + {_count(st['hallucinators'])} "
            f"hallucinators"
            + (f" + {_count(st['soft_labels'])} soft labels" if st["soft_labels"] else "")
            + f"; baseline {ds['num_classes']}x{doc['ipc']}x{ds['channels']}x{ds['height']}x{ds['width']} = "
            f"{_count(st['baseline'])} ({100 * st['ratio']:.1f}% of it)",
        ),
        ("labels", "hard + soft (logits)" if doc["soft_labels"] else "hard"),
        *_infer_rows(doc),
        ("normalization", f"mean {doc['normalization']['mean']}, std {doc['normalization']['std']}"),
        (
            "zca",
            "none"
            if z is None
            else f"eps {z['eps']}, rank {z['rank']}/{z['dim']}, max decoding error "
            f"{255 * z['error_bound']:.3f}/255 (tolerance {255 * z['tolerance']:.2f}/255); "
            f"{_count(st['zca'])} values, not in the total",
        ),
        ("learned lr", "-" if doc["learned_lr"] is None else f"{doc['learned_lr']:.6g}"),
        ("seed", str(doc["seed"])),
        ("created", f"{doc['created']} by {doc['library']['name']} {doc['library']['version']}"),
        ("payload sha256", doc["payload_sha256"] + (" (verified)" if info.verified else " (not checked: --verify)")),
        (
            "size by part",
            ", ".join(
                f"{part} {_bytes(n)}" for part, n in info.parts.items() if n or part not in ("other", "compensators")
            ),
        ),
    ]
    evaluation = (doc.get("extra") or {}).get("evaluation")
    if isinstance(evaluation, dict):
        for model, r in evaluation.items():
            if isinstance(r, dict) and isinstance(r.get("mean"), (int, float)):
                std = r.get("std")
                spread = f" +- {100 * std:.2f}" if isinstance(std, (int, float)) else ""
                runs = f" ({r['runs']} runs)" if "runs" in r else ""
                rows.append((f"eval {model}", f"{100 * r['mean']:.2f}%{spread}{runs}"))
    return rows


def _infer_rows(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """Format 1.2 (INFER): compensators, instances, the full storage split, soft labels and the recipe."""
    comp, isl, rec = doc.get("compensators"), doc.get("instance_soft_labels"), doc.get("evaluation_recipe")
    if comp is None and isl is None and rec is None:
        return []
    ds, st = doc["dataset"], doc["storage"]
    rows = []
    if comp is not None:
        rows.append(
            (
                "compensators",
                f"{comp['subsets']} subsets x {comp['per_subset']} ({comp['method']}, {comp['combine']}"
                + (f"; teachers {', '.join(comp['teachers'])}" if comp.get("teachers") else "")
                + ")",
            )
        )
    rows.append(("instances", f"{doc['num_instances']} decoded ({doc['num_images']} natural images first)"))
    if isl is not None:
        rows.append(("soft labels", f"{isl['count']} x {ds['num_classes']} logits at T = {isl['temperature']:g}"))
    rows.append(
        (
            "storage (all)",
            f"{_count(st['full_total'])} values = {_count(st['bases'])} natural images + "
            f"{_count(st['compensators'])} compensators + {_count(st['instance_soft_labels'])} soft labels "
            f"({100 * st['full_ratio']:.1f}% of the baseline); soft labels count one value per class per instance; "
            "a 1.0/1.1 reader sees only the natural images with hard labels",
        )
    )
    if rec is not None:
        rows.append(
            (
                "evaluation recipe",
                f"{rec['label_mode']} labels, {rec['loss']} at T = {rec['temperature']:g}, MixUp {rec['mixup_alpha']:g}, "
                f"{rec['optimizer']} lr {rec['lr']:g} wd {rec['weight_decay']:g}, {rec['schedule']}, "
                f"{rec['epochs']} epochs, batch {rec['batch_size']}, {', '.join(rec['augmentations']) or 'no augmentation'}; "
                f"{rec['reported'].replace('_', ' ')} reported",
            )
        )
    return rows


def info(
    artifact: Annotated[
        str, typer.Argument(help="An artifact: a .safetensors path or hf://datasets/ORG/NAME\\[@REV]\\[/FILE].")
    ],
    as_json: JsonOption = False,
    verify: Annotated[
        bool, typer.Option("--verify", help="Also read the payload: checksum, label range, finite values.")
    ] = False,
) -> None:
    """Show what an artifact holds: dataset, objective, bases, hallucinators, images, storage against the
    baseline budget, learned lr, provenance and the file size by part. Reads only the header unless --verify."""
    from habacli.api import info as api_info  # lazy: haba --help never loads the library

    result = api_info(artifact, verify=verify)
    if as_json:
        typer.echo(json.dumps(result.metadata, indent=2, sort_keys=True))
        return
    from rich.console import Console  # lazy: rich only when a command renders
    from rich.table import Table  # lazy: rich only when a command renders

    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in _rows(result.doc, result):
        table.add_row(key, value)
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(table, highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``haba info`` to the app."""
    app.command("info")(info)
