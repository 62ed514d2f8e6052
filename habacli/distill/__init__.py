"""Distillation: the run loop (:mod:`.run`), its configuration and presets (:mod:`.config`), the
engine (:mod:`.engine`), the synthetic set and contrastive game (:mod:`.factorization`) and checkpoints
(:mod:`.checkpoint`). Importing this package is torch-free."""

from habacli.distill.run import DistillResult, ProgressEvent, Run, distill

__all__ = ["DistillResult", "ProgressEvent", "Run", "distill"]
