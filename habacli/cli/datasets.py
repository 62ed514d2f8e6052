"""`haba datasets`: the dataset registry and where each dataset is available locally."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from habacli.cli.options import DataDirOption, JsonOption
from habacli.cli.progress import ProgressRenderer
from habacli.errors import ConfigError


def _size(d: dict) -> str:
    return f"{d['channels']}x{d['height']}x{d['width']}"


def datasets(
    name: Annotated[
        str | None,
        typer.Argument(
            help="A dataset name or glob (e.g. 'cifar*'); imagefolder:PATH and "
            "hf:ORG/NAME[:config] are read and described."
        ),
    ] = None,
    data_dir: DataDirOption = None,
    image_size: Annotated[int | None, typer.Option("--image-size", help="Resize custom datasets to this side.")] = None,
    load: Annotated[
        bool,
        typer.Option(
            "--load",
            help="Load NAME's train and test splits now (decode once into haba's cache) and print their sizes.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """List the datasets haba knows (channels x size, classes, Hub id) and whether each is available locally."""
    from habacli.data.spec import DATASETS, is_custom  # lazy: haba --help never loads the library

    if load:
        _load(name, data_dir, image_size, as_json)
        return

    if name is not None and is_custom(name):
        from habacli.data import get_spec  # lazy: haba --help never loads the library

        spec = get_spec(name, data_dir=data_dir, image_size=image_size)
        if as_json:
            typer.echo(json.dumps(spec.to_dict(), indent=2))
        else:
            typer.echo(
                f"{spec.name}: {spec.channels}x{spec.height}x{spec.width}, {spec.num_classes} classes "
                f"({', '.join(spec.class_names[:10])}{', ...' if spec.num_classes > 10 else ''}); "
                f"mean {tuple(round(m, 4) for m in spec.mean)}, std {tuple(round(s, 4) for s in spec.std)}"
            )
        return
    from habacli.data.status import dataset_status  # lazy: haba --help never loads the library

    pattern = None
    if name is not None:
        if any(ch in name for ch in "*?["):
            pattern = name
        else:
            pattern = DATASETS.get(name.replace("-", "_") if name.replace("-", "_") in DATASETS else name).name
    rows = dataset_status(data_dir=data_dir, pattern=pattern)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console  # lazy: rich only when a command renders
    from rich.table import Table  # lazy: rich only when a command renders

    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("name", "shape", "classes", "hub id", "available"):
        table.add_column(col)
    for d in rows:
        where = d["where"] or "-"
        table.add_row(
            d["name"], _size(d), str(d["num_classes"]), d["hub_id"] or "-", f"yes ({where})" if d["available"] else "no"
        )
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    console.print(table)
    console.print(
        "Also: imagefolder:PATH (one sub-folder per class) and hf:ORG/NAME[:config] (any Hub or local "
        "image-classification dataset).",
        highlight=False,
    )


def _load(name: str | None, data_dir: Path | None, image_size: int | None, as_json: bool) -> None:
    from habacli.data import load_split  # lazy: haba --help never loads the library

    if not name:
        raise ConfigError("--load needs a dataset NAME")
    out: dict[str, dict[str, Any]] = {}
    with ProgressRenderer(quiet=as_json) as progress:
        splits = {
            split: load_split(name, split, data_dir=data_dir, image_size=image_size, progress=progress)
            for split in ("train", "test")
        }
    for split, s in splits.items():
        out[split] = {
            "images": len(s),
            "shape": list(s.images.shape[1:]),
            "per_class": s.class_counts(),
            "source": s.source,
        }
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    for split, d in out.items():
        typer.echo(f"{name} {split}: {d['images']} images of {'x'.join(map(str, d['shape']))} from {d['source']}")


def register(app: typer.Typer) -> None:
    """Add this module's command(s) to the app."""
    app.command(
        "datasets",
        epilog="Local data is searched in --data-dir, else in $HABA_DATA (a path list) and known system folders "
        "(Debian's /usr/share/datasets/fashion-mnist), else the Hub copy is used through the datasets library "
        "(offline: HF_HUB_OFFLINE=1). Decoded splits are cached in $HABA_CACHE (default ~/.cache/haba). "
        "Examples: haba datasets; haba datasets cifar10 --load --data-dir ~/data; "
        "haba datasets imagefolder:./pets --image-size 64",
    )(datasets)
