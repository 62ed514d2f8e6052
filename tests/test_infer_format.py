"""Format 1.2 (INFER): the schema accepts 1.0 documents unchanged and the 1.2 additions, rejects bad 1.2 blocks;
an InferSet round-trips through the artifact codec in the spec's instance order."""

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
    """A 1.2 document for INFER at Fashion-MNIST IPC 10 with M = 4 (K = 7), built on the plain example's."""
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


def test_v12_infer_document_validates(validator):
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
def test_bad_v12_blocks_are_rejected(validator, path, value):
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


def _small_set(with_ufc: bool = True):
    import torch

    from habacli.infer.pipeline import InferSet

    g = torch.Generator().manual_seed(0)
    k, c, m = 2, 3, 2
    natural = torch.randn(k, c, 1, 6, 6, generator=g)
    ufc = torch.randn(k, m, 1, 6, 6, generator=g) if with_ufc else None
    n = k * c * (m + 1 if with_ufc else 1)
    soft = torch.randn(n, c, generator=g)
    return InferSet(natural, ufc, soft, 30.0, (0.3,), (0.4,), "toy", 4, ["a", "b"] if with_ufc else [], 7)


def _toy_spec() -> dict:
    return {"name": "toy", "channels": 1, "height": 6, "width": 6, "num_classes": 3, "class_names": ["a", "b", "c"]}


@pytest.mark.parametrize("with_ufc", [True, False])
def test_infer_set_round_trips_through_the_artifact(tmp_path, with_ufc):
    import torch

    from habacli.artifact.codec import load_artifact, save_artifact
    from habacli.artifact.header import read_header
    from habacli.infer.artifact import infer_artifact, recipe_from_dict

    s = _small_set(with_ufc)
    path = save_artifact(infer_artifact(s, _toy_spec(), recipe=InferRecipe(epochs=5)), tmp_path / "a.safetensors")
    assert read_header(path).meta["format_version"] == "1.2"
    art = load_artifact(path)
    x, y = art.decode(pixel=False)
    want_x, want_y = s.instances()
    assert art.num_instances == s.num_instances == x.shape[0]
    assert torch.equal(x, want_x) and torch.equal(y, want_y)
    assert torch.equal(art.instance_soft_labels, s.soft_labels) and art.soft_label_temperature == 30.0
    assert recipe_from_dict(art.evaluation_recipe) == InferRecipe(epochs=5)
    assert recipe_from_dict(art.evaluation_recipe, epochs=9).epochs == 9
    st = art.storage
    assert st["compensators"] == (0 if s.ufc is None else s.ufc.numel())
    assert st["instance_soft_labels"] == s.soft_labels.numel()
    assert st["full_total"] == st["total"] + st["compensators"] + st["instance_soft_labels"]
    xi, yi = art.decode(pixel=False, indices=torch.tensor([x.shape[0] - 1, 0]))
    assert torch.equal(xi, x[[-1, 0]]) and torch.equal(yi, y[[-1, 0]])


def test_a_file_without_infer_tensors_stays_1_0(tmp_path):
    from habacli.artifact.codec import load_artifact, save_artifact
    from habacli.artifact.header import read_header

    art = load_artifact(FORMATS / "examples" / "fashion_plain.safetensors")
    path = save_artifact(art, tmp_path / "p.safetensors")
    assert read_header(path).meta["format_version"] == "1.0"
    assert path.read_bytes() == (FORMATS / "examples" / "fashion_plain.safetensors").read_bytes()
