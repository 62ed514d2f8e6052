"""Format v1.1 draft: the schema accepts 1.0 documents unchanged and the 1.1 additions, and rejects bad 1.1 blocks."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
from safetensors import safe_open

from habacli.infer.budget import infer_budget
from habacli.infer.train import InferRecipe

FORMATS = Path(__file__).resolve().parent.parent / "formats"


@pytest.fixture(scope="module")
def validator():
    schema = json.loads((FORMATS / "haba-artifact-v1.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _doc(name: str) -> dict:
    with safe_open(str(FORMATS / "examples" / f"{name}.safetensors"), framework="pt") as f:
        return json.loads(f.metadata()["haba"])


def _infer_doc() -> dict:
    """A 1.1 document for INFER at Fashion-MNIST IPC 10 with M = 4 (K = 7), built on the plain example's."""
    doc = _doc("fashion_plain")
    b = infer_budget(10, 10, 4)
    st = b.storage(1, 28, 28)
    doc["bases"] = {"count": b.natural_images, "channels": 1}
    doc["num_images"] = b.natural_images
    doc["num_instances"] = b.instances
    doc["compensators"] = {
        "method": "infer-ufc",
        "subsets": b.subsets,
        "per_subset": 4,
        "combine": "add-clip",
        "teachers": ["a", "b", "c", "d"],
        "config": {"iterations": 1000},
    }
    doc["instance_soft_labels"] = {
        "count": b.instances,
        "temperature": 30.0,
        "kind": "logits",
        "source": "teacher-ensemble-mean",
    }
    doc["evaluation_recipe"] = {**InferRecipe().to_dict(), "network": "convnet"}
    total = st["natural"]
    doc["storage"] = {
        "bases": st["natural"],
        "hallucinators": 0,
        "soft_labels": 0,
        "total": total,
        "baseline": st["baseline"],
        "ratio": total / st["baseline"],
        "zca": 0,
        "compensators": st["compensators"],
        "instance_soft_labels": st["soft_labels"],
        "full_total": st["total"],
        "full_ratio": st["ratio"],
    }
    return doc


@pytest.mark.parametrize("name", ["fashion_plain", "fashion_haba_zca", "rgb_single_channel"])
def test_v10_examples_still_validate(validator, name):
    validator.validate(_doc(name))


def test_v11_infer_document_validates(validator):
    doc = _infer_doc()
    validator.validate(doc)
    assert doc["storage"]["full_total"] == 98 * 784 + 3500  # soft labels and compensators are counted
    assert doc["storage"]["total"] == 70 * 784  # the 1.0 formula: what a 1.0 reader decodes


@pytest.mark.parametrize(
    "path, value",
    [
        (("compensators", "method"), "haba-style-translator"),
        (("compensators", "combine"), "add"),
        (("compensators", "subsets"), 0),
        (("instance_soft_labels", "temperature"), 0),
        (("instance_soft_labels", "kind"), "probabilities"),
        (("evaluation_recipe", "optimizer"), "lamb"),
        (("evaluation_recipe", "augmentations"), ["dsa"]),
        (("evaluation_recipe", "reported"), "best_epoch"),
        (("storage", "full_ratio"), -1),
    ],
)
def test_bad_v11_blocks_are_rejected(validator, path, value):
    doc = copy.deepcopy(_infer_doc())
    doc[path[0]][path[1]] = value
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(doc)


def test_recipe_defaults_are_infers():
    r = InferRecipe().to_dict()
    assert (r["temperature"], r["mixup_alpha"], r["lr"], r["weight_decay"], r["epochs"], r["batch_size"]) == (
        30.0,
        0.8,
        1e-3,
        0.01,
        400,
        64,
    )
    assert r["loss"] == "kl" and r["temperature_squared"] is False and r["reported"] == "final_epoch"
