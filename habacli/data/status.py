"""``dataset_status``: what ``haba datasets`` shows. Cheap: stats files, never decodes, never imports torch."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from habacli.data import cache
from habacli.data.locate import probe_local
from habacli.data.spec import DATASETS, DatasetSpec


def _hf_home() -> Path:
    return Path(
        os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
    )


def hub_cached(hub_id: str | None) -> Path | None:
    """The folder of ``hub_id`` in the ``datasets`` / hub caches, if any."""
    if not hub_id:
        return None
    org_name = hub_id.split("/")
    ds_cache = Path(os.environ.get("HF_DATASETS_CACHE") or _hf_home() / "datasets")
    hub_cache = Path(os.environ.get("HF_HUB_CACHE") or _hf_home() / "hub")
    for p in (ds_cache / "___".join(org_name), hub_cache / ("datasets--" + "--".join(org_name))):
        if p.is_dir():
            return p
    return None


def _status(spec: DatasetSpec, data_dir: str | os.PathLike | None) -> dict[str, Any]:
    found = probe_local(spec, data_dir) or (probe_local(spec, None) if data_dir is not None else None)
    cached = cache.cached_splits(spec.name)
    hub = hub_cached(spec.hub_id)
    where = str(found) if found else (f"hub cache {hub}" if hub else None)
    return {
        "name": spec.name,
        "channels": spec.channels,
        "height": spec.height,
        "width": spec.width,
        "num_classes": spec.num_classes,
        "hub_id": spec.hub_id,
        "hub_config": spec.hub_config,
        "license": spec.license,
        "local": str(found) if found else None,
        "hub_cache": str(hub) if hub else None,
        "haba_cache": [p.name for p in cached],
        "available": bool(found or hub or cached),
        "where": where or ("haba cache" if cached else None),
        "notes": spec.notes,
    }


def dataset_status(*, data_dir: str | os.PathLike | None = None, pattern: str | None = None) -> list[dict[str, Any]]:
    """One dict per registered dataset: its spec summary and whether (and where) it is available
    locally: a ``--data-dir`` / ``$HABA_DATA`` / system folder, the Hub cache, or haba's own cache."""
    return [_status(DATASETS.get(n), data_dir) for n in DATASETS.names(pattern)]
