"""INFER (Zhang et al., ICLR 2025): natural subsets, universal feature compensators and static soft labels.

Modules: :mod:`.budget` (K, pairing, storage counts), :mod:`.teachers` (BatchNorm teachers, stored as
safetensors), :mod:`.ufc` (UFC optimisation), :mod:`.labels` (static ensemble soft labels), :mod:`.train`
(student training as INFER evaluates), :mod:`.pipeline` (``distill_infer`` -> :class:`InferSet`),
:mod:`.store` (an InferSet and the per-UFC resume state as safetensors).
"""

from habacli.infer.budget import (
    InferBudget,
    InferBudgetError,
    Pair,
    infer_budget,
    subsets_for,
)
from habacli.infer.labels import (
    DEFAULT_TEMPERATURE,
    ensemble_logits,
    expand_instances,
    static_soft_labels,
)
from habacli.infer.pipeline import InferSet, distill_infer
from habacli.infer.store import (
    load_infer_set,
    load_ufc_state,
    save_infer_set,
    save_ufc_state,
)
from habacli.infer.teachers import (
    FAMILIES,
    TEACHER_ARCHS,
    TeacherError,
    build_teacher,
    load_teacher,
    load_teachers,
    train_teachers,
)
from habacli.infer.train import InferRecipe, StudentResult, train_student
from habacli.infer.ufc import UFCConfig, train_ufc, train_ufcs

__all__ = [
    "DEFAULT_TEMPERATURE",
    "FAMILIES",
    "TEACHER_ARCHS",
    "InferBudget",
    "InferBudgetError",
    "InferRecipe",
    "InferSet",
    "Pair",
    "StudentResult",
    "TeacherError",
    "UFCConfig",
    "build_teacher",
    "distill_infer",
    "ensemble_logits",
    "expand_instances",
    "infer_budget",
    "load_infer_set",
    "load_teacher",
    "load_teachers",
    "load_ufc_state",
    "save_infer_set",
    "save_ufc_state",
    "static_soft_labels",
    "subsets_for",
    "train_student",
    "train_teachers",
    "train_ufc",
    "train_ufcs",
]
