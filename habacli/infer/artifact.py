"""An :class:`~habacli.infer.pipeline.InferSet` as a haba artifact (format 1.2, spec section 12) and back,
and the artifact's evaluation recipe as an :class:`~habacli.infer.train.InferRecipe`."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from habacli.artifact.codec import HabaArtifact
from habacli.errors import ConfigError
from habacli.infer.pipeline import InferSet
from habacli.infer.train import InferRecipe

__all__ = ["infer_artifact", "recipe_from_dict", "recipe_to_dict"]

DEFAULT_NETWORK = "convnet"


def recipe_to_dict(recipe: InferRecipe, network: str = DEFAULT_NETWORK) -> dict[str, Any]:
    """The ``evaluation_recipe`` block of a 1.2 document."""
    return {**recipe.to_dict(), "network": network}


def recipe_from_dict(d: dict[str, Any], *, epochs: int | None = None) -> InferRecipe:
    """An artifact's ``evaluation_recipe`` as a runnable recipe (``epochs`` overrides the stored number).
    A value haba does not implement is a one-line :class:`ConfigError` naming the key (spec section 12.5)."""
    fields = {f.name for f in dataclasses.fields(InferRecipe)}
    known = {k: v for k, v in d.items() if k in fields}
    if "augmentations" in known:
        known["augmentations"] = tuple(known["augmentations"])
    if d.get("reported", "final_epoch") != "final_epoch":
        raise ConfigError(f"evaluation_recipe.reported {d['reported']!r} is not implemented (haba: final_epoch)")
    recipe = InferRecipe(**known)
    return dataclasses.replace(recipe, epochs=int(epochs)) if epochs else recipe


def infer_artifact(
    s: InferSet,
    spec: Any,
    *,
    recipe: InferRecipe | None = None,
    network: str = DEFAULT_NETWORK,
    extra: dict[str, Any] | None = None,
    created: str | None = None,
    library_version: str | None = None,
) -> HabaArtifact:
    """The artifact of an INFER set: bases = the K*C natural images subset-major (basis k*C + c is class c
    of subset k), compensators with their pairing, instance soft labels with their temperature, and the
    evaluation recipe. ``s.ufc`` None (the no-UFC ablation) gives natural images with soft labels only."""
    k_sub, nc = s.subsets, s.num_classes
    bases = s.natural.reshape(k_sub * nc, *s.natural.shape[2:])
    labels = torch.arange(nc).repeat(k_sub)
    comp_info: dict[str, Any] = {"teachers": list(s.teachers)} if s.ufc is not None and s.teachers else {}
    if s.ufc is not None and "ufc_config" in s.info:
        comp_info["config"] = s.info["ufc_config"]
    soft_info: dict[str, Any] = {"source": "teacher-ensemble-mean"}
    if s.teachers:
        soft_info["teachers"] = list(s.teachers)
    return HabaArtifact.build(
        bases,
        labels,
        None,
        spec,
        s.mean,
        s.std,
        None,
        objective="infer",
        objective_config={
            "subsets": k_sub,
            "teachers": list(s.teachers),
            **{k: v for k, v in s.info.items() if k in ("ufc_config", "teacher_accuracy")},
        },
        ipc=s.ipc or k_sub,
        seed=s.seed,
        extra=extra,
        created=created,
        library_version=library_version,
        compensators=s.ufc,
        compensator_subset=None if s.ufc is None else torch.arange(k_sub).repeat_interleave(nc),
        compensator_info=comp_info,
        instance_soft_labels=s.soft_labels,
        soft_label_temperature=s.temperature if s.soft_labels is not None else None,
        soft_label_info=soft_info if s.soft_labels is not None else None,
        evaluation_recipe=recipe_to_dict(recipe or InferRecipe(), network),
    )
