"""MTT expert trajectories: training (``haba experts``), storage, manifest and loading.

- :mod:`habacli.experts.layout`: the flat parameter order shared with the MTT student;
- :mod:`habacli.experts.store`: the ``haba-experts-v1`` files and ``manifest.json``;
- :mod:`habacli.experts.train`: :func:`train_experts` (single process, ``--shard``, torchrun);
- :mod:`habacli.experts.buffer`: :func:`open_buffer` for trajectory matching.
"""

from __future__ import annotations

from habacli.experts.buffer import ExpertBuffer, open_buffer
from habacli.experts.layout import ParamLayout
from habacli.experts.store import read_manifest, rebuild_manifest
from habacli.experts.train import (
    ExpertsResult,
    default_experts_dir,
    default_zca,
    expert_seed,
    parse_shard,
    train_experts,
)

__all__ = [
    "ExpertBuffer",
    "ExpertsResult",
    "ParamLayout",
    "default_experts_dir",
    "default_zca",
    "expert_seed",
    "open_buffer",
    "parse_shard",
    "read_manifest",
    "rebuild_manifest",
    "train_experts",
]
