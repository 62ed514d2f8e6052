"""Reading an expert buffer for trajectory matching: validation against the run, lazy row reads.

Only the rows a distillation iteration needs (``snapshot[s]`` and ``snapshot[s + M]``) are
read, through safetensors slices, so a 6.5 GB CIFAR-10 buffer costs no RAM. Each file's
SHA-256 is checked against the manifest the first time it is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from habacli.errors import ExpertsError
from habacli.experts.layout import ParamLayout
from habacli.experts.store import (
    check_config,
    describe,
    manifest_config,
    read_header,
    read_manifest,
    sha256_file,
)


@dataclass
class ExpertBuffer:
    """The experts of one folder, checked against the distillation run that uses them."""

    folder: Path
    manifest: dict[str, Any]
    verify: bool = True
    _checked: set[int] = field(default_factory=set)

    @property
    def config(self) -> dict[str, Any]:
        """The shared configuration of the experts."""
        return manifest_config(self.manifest)

    @property
    def num_experts(self) -> int:
        """How many experts the manifest lists."""
        return len(self.manifest["experts"])

    @property
    def epochs(self) -> int:
        """Epochs per expert (each trajectory has ``epochs + 1`` rows)."""
        return int(self.manifest["epochs"])

    @property
    def layout(self) -> ParamLayout:
        """The parameter layout of the trajectories."""
        return ParamLayout.from_json(self.manifest["params"])

    def _path(self, i: int) -> Path:
        return self.folder / self.manifest["experts"][i]["file"]

    def _check_file(self, i: int) -> Path:
        path = self._path(i)
        if i in self._checked:
            return path
        entry = self.manifest["experts"][i]
        if not path.is_file():
            raise ExpertsError(
                f"{path}: listed in {self.folder / 'manifest.json'} but missing; rebuild with `haba experts ... --merge`"
            )
        meta, _ = read_header(path)
        cfg = {k: v for k, v in meta.items() if k not in ("index", "expert_seed", "test_accuracy")}
        check_config(path, cfg, self.config)
        if self.verify:
            digest = sha256_file(path)
            if digest != entry["sha256"]:
                raise ExpertsError(
                    f"{path}: checksum mismatch (sha256 {digest[:12]}... vs {entry['sha256'][:12]}... in the manifest); "
                    "the file is corrupted: delete it and run `haba experts` again"
                )
        self._checked.add(i)
        return path

    def rows(self, i: int, rows: list[int], *, device: torch.device | str = "cpu") -> torch.Tensor:
        """Rows ``rows`` of expert ``i``'s trajectory as float32 ``[len(rows), P]`` on ``device``."""
        path = self._check_file(i)
        with safe_open(str(path), framework="pt") as f:
            sl = f.get_slice("trajectory")
            out = torch.stack([sl[r : r + 1][0] for r in rows])
        if not torch.isfinite(out).all():
            raise ExpertsError(f"{path}: trajectory holds NaN or inf values (a diverged or corrupted expert)")
        return out.to(device=device, dtype=torch.float32)


def open_buffer(
    folder: str | Path,
    *,
    dataset: str,
    model: str,
    zca: bool,
    min_epochs: int,
    layout: ParamLayout | None = None,
    make_command: str | None = None,
    verify: bool = True,
) -> ExpertBuffer:
    """Open and validate the buffer in ``folder`` for a run on ``dataset``/``model``.

    Raises :class:`ExpertsError` (one line) when the experts are missing (naming
    ``make_command``), belong to another dataset, model or ZCA setting, are too short
    (fewer than ``min_epochs`` epochs), or have another parameter layout than ``layout``.
    """
    folder = Path(folder)
    hint = f"; make them with: {make_command}" if make_command else ""
    manifest = read_manifest(folder)
    if manifest is None:
        if folder.is_dir() and any(folder.glob("expert_*.safetensors")):
            raise ExpertsError(
                f"{folder}: expert files without manifest.json; rebuild it with `haba experts {dataset} --merge --out {folder}`"
            )
        raise ExpertsError(f"no expert trajectories for {dataset}/{model} in {folder}{hint}")
    if not manifest["experts"]:
        raise ExpertsError(f"{folder}: the manifest lists no expert{hint}")
    where = folder / "manifest.json"
    desc = describe(manifest)
    if manifest.get("dataset") != dataset:
        raise ExpertsError(
            f"{where}: experts are for dataset {manifest.get('dataset')!r}, not {dataset!r} ({desc}){hint}"
        )
    if manifest.get("model") != model:
        raise ExpertsError(f"{where}: experts are for model {manifest.get('model')!r}, not {model!r} ({desc}){hint}")
    if bool(manifest.get("zca")) != bool(zca):
        want = "with" if zca else "without"
        raise ExpertsError(
            f"{where}: this run is {want} ZCA but the experts are not ({desc}); pass {'--no-zca' if zca else '--zca'} or other experts{hint}"
        )
    if int(manifest.get("epochs", 0)) < min_epochs:
        raise ExpertsError(
            f"{where}: trajectories have {manifest.get('epochs')} epochs but this run needs {min_epochs} "
            f"(max_start_epoch - 1 + expert_epochs){hint}"
        )
    buffer = ExpertBuffer(folder, manifest, verify=verify)
    if layout is not None:
        theirs = buffer.layout
        if theirs.size != layout.size:
            raise ExpertsError(
                f"{where}: experts have {theirs.size} parameters but the student network has {layout.size}"
            )
        if theirs != layout:
            raise ExpertsError(f"{where}: the experts' parameter names/shapes differ from the student network's")
    return buffer
