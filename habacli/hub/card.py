"""The dataset card (``README.md``) that ``haba push`` writes next to an artifact.

YAML front matter for the Hub (license, task, tags, size, viewer ``configs`` or ``viewer: false``)
and a body that says what the set is, how to use it, what it holds and costs, how it scored and
what to cite. Pure text: no torch, no network.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from habacli import __version__

#: License ids the Hub accepts in ``license:`` (a subset; anything else becomes ``other``).
HUB_LICENSES = frozenset(
    {
        "apache-2.0",
        "mit",
        "afl-3.0",
        "artistic-2.0",
        "bsl-1.0",
        "bsd",
        "bsd-2-clause",
        "bsd-3-clause",
        "bsd-3-clause-clear",
        "c-uda",
        "cc",
        "cc0-1.0",
        "cc-by-2.0",
        "cc-by-2.5",
        "cc-by-3.0",
        "cc-by-4.0",
        "cc-by-sa-3.0",
        "cc-by-sa-4.0",
        "cc-by-nc-2.0",
        "cc-by-nc-3.0",
        "cc-by-nc-4.0",
        "cc-by-nd-4.0",
        "cc-by-nc-nd-3.0",
        "cc-by-nc-nd-4.0",
        "cc-by-nc-sa-2.0",
        "cc-by-nc-sa-3.0",
        "cc-by-nc-sa-4.0",
        "cdla-sharing-1.0",
        "cdla-permissive-1.0",
        "cdla-permissive-2.0",
        "wtfpl",
        "ecl-2.0",
        "epl-1.0",
        "epl-2.0",
        "etalab-2.0",
        "eupl-1.1",
        "eupl-1.2",
        "agpl-3.0",
        "gfdl",
        "gpl",
        "gpl-2.0",
        "gpl-3.0",
        "lgpl",
        "lgpl-2.1",
        "lgpl-3.0",
        "isc",
        "lppl-1.3c",
        "ms-pl",
        "mpl-2.0",
        "odc-by",
        "odbl",
        "osl-3.0",
        "postgresql",
        "ofl-1.1",
        "ncsa",
        "unlicense",
        "zlib",
        "pddl",
        "unknown",
        "other",
    }
)

HABA_BIBTEX = """@inproceedings{liu2022dataset,
  title     = {Dataset Distillation via Factorization},
  author    = {Liu, Songhua and Wang, Kai and Yang, Xingyi and Ye, Jingwen and Wang, Xinchao},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2022}
}"""

#: objective -> (paper, arXiv id, BibTeX)
OBJECTIVE_CITATIONS: dict[str, tuple[str, str, str]] = {
    "dc": (
        "Dataset Condensation with Gradient Matching (DC)",
        "2006.05929",
        """@inproceedings{zhao2021dataset,
  title     = {Dataset Condensation with Gradient Matching},
  author    = {Zhao, Bo and Mopuri, Konda Reddy and Bilen, Hakan},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2021}
}""",
    ),
    "dsa": (
        "Dataset Condensation with Differentiable Siamese Augmentation (DSA)",
        "2102.08259",
        """@inproceedings{zhao2021dsa,
  title     = {Dataset Condensation with Differentiable Siamese Augmentation},
  author    = {Zhao, Bo and Bilen, Hakan},
  booktitle = {International Conference on Machine Learning (ICML)},
  year      = {2021}
}""",
    ),
    "dm": (
        "Dataset Condensation with Distribution Matching (DM)",
        "2110.04181",
        """@inproceedings{zhao2023dm,
  title     = {Dataset Condensation with Distribution Matching},
  author    = {Zhao, Bo and Bilen, Hakan},
  booktitle = {IEEE/CVF Winter Conference on Applications of Computer Vision (WACV)},
  year      = {2023}
}""",
    ),
    "mtt": (
        "Dataset Distillation by Matching Training Trajectories (MTT)",
        "2203.11932",
        """@inproceedings{cazenavette2022distillation,
  title     = {Dataset Distillation by Matching Training Trajectories},
  author    = {Cazenavette, George and Wang, Tongzhou and Torralba, Antonio and Efros, Alexei A. and Zhu, Jun-Yan},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2022}
}""",
    ),
}

_LICENSE_ALIASES = {
    "cc0": "cc0-1.0",
    "cc-0": "cc0-1.0",
    "apache": "apache-2.0",
    "apache2": "apache-2.0",
    "apache-license-2.0": "apache-2.0",
    "mit-license": "mit",
    "the-unlicense": "unlicense",
}

PARQUET_GLOB = "expanded/train-*.parquet"
_SIZES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
)


@dataclass
class CardFacts:
    """Everything the card says about an artifact (plain values; see :func:`facts_from_metadata`)."""

    dataset: str
    num_classes: int
    channels: int
    height: int
    width: int
    license: str
    objective: str
    ipc: int
    num_bases: int
    num_hallucinators: int
    num_images: int
    soft_labels: bool = False
    zca: bool = False
    learned_lr: float | None = None
    seed: int | None = None
    hub_id: str | None = None
    class_names: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    storage: dict[str, Any] = field(default_factory=dict)
    evaluation: Any = None
    sha256: str | None = None
    haba_version: str = __version__
    # format 1.2 (INFER)
    compensators: dict[str, Any] | None = None
    instance_soft_labels: dict[str, Any] | None = None
    evaluation_recipe: dict[str, Any] | None = None
    num_instances: int | None = None


INFER_BIBTEX = """@inproceedings{zhang2025infer,
  title     = {Breaking Class Barriers: Efficient Dataset Distillation via Inter-Class Feature Compensator},
  author    = {Zhang, Xin and Du, Jiawei and Liu, Ping and Zhou, Joey Tianyi},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2025}
}"""


def facts_from_metadata(doc: Mapping[str, Any], *, sha256: str | None = None) -> CardFacts:
    """Collect the card's facts from an artifact's metadata document (:func:`habacli.artifact.codec.read_metadata`)."""
    ds, bases, hal = doc.get("dataset") or {}, doc.get("bases") or {}, doc.get("hallucinators") or {}
    extra = doc.get("extra") or {}
    lr = doc.get("learned_lr")
    return CardFacts(
        dataset=str(ds.get("name", "unknown")),
        num_classes=int(ds.get("num_classes") or 0),
        channels=int(ds.get("channels") or 0),
        height=int(ds.get("height") or 0),
        width=int(ds.get("width") or 0),
        license=str(ds.get("license") or "unknown"),
        objective=str((doc.get("objective") or {}).get("name", "?")),
        ipc=int(doc.get("ipc") or 0),
        num_bases=int(bases.get("count") or 0),
        num_hallucinators=int(hal.get("count") or 0),
        num_images=int(doc.get("num_images") or 0),
        soft_labels=bool(doc.get("soft_labels")),
        zca=doc.get("zca") is not None,
        learned_lr=None if lr is None else float(lr),
        seed=doc.get("seed"),
        hub_id=ds.get("hub_id"),
        class_names=[str(c) for c in ds.get("class_names") or []],
        sources=[str(u) for u in ds.get("sources") or []],
        storage=dict(doc.get("storage") or {}),
        evaluation=doc.get("evaluation", extra.get("evaluation")),
        sha256=sha256,
        haba_version=str((doc.get("library") or {}).get("version") or __version__),
        compensators=doc.get("compensators"),
        instance_soft_labels=doc.get("instance_soft_labels"),
        evaluation_recipe=doc.get("evaluation_recipe"),
        num_instances=doc.get("num_instances"),
    )


def _recipe_section(facts: CardFacts) -> str:
    """Format 1.2: how the set is meant to be trained on, and what older readers see."""
    rec, isl, comp = facts.evaluation_recipe, facts.instance_soft_labels, facts.compensators
    parts = []
    if comp:
        parts.append(
            f"INFER set: {comp.get('subsets')} subsets of one natural image per class, each with "
            f"{comp.get('per_subset')} inter-class feature compensators (instance = clip(natural + compensator)); "
            f"{facts.num_instances} training instances in all."
        )
    if isl:
        parts.append(
            f"Every instance has a stored soft label (teacher-ensemble logits, temperature T = {isl.get('temperature')}): "
            "no teacher network is needed to train on it."
        )
    if rec:
        parts.append(
            "`haba evaluate` follows this recipe by default (`--recipe standard` gives the hard-label protocol):\n\n"
            + _table(
                [
                    (
                        "labels",
                        f"{rec.get('label_mode')} ({rec.get('loss')} at T = {rec.get('temperature')}, "
                        f"T² scaling: {'yes' if rec.get('temperature_squared') else 'no'})",
                    ),
                    ("MixUp", f"alpha {rec.get('mixup_alpha')}, soft labels mixed {rec.get('soft_label_mixing')}ly"),
                    (
                        "optimiser",
                        f"{rec.get('optimizer')}, lr {rec.get('lr')}, weight decay {rec.get('weight_decay')}, "
                        f"{rec.get('schedule')} schedule",
                    ),
                    ("epochs, batch", f"{rec.get('epochs')}, {rec.get('batch_size')}"),
                    ("augmentations", ", ".join(rec.get("augmentations") or []) or "none"),
                    ("reported", str(rec.get("reported", "")).replace("_", " ")),
                ]
            )
        )
    parts.append(
        "This is a haba format 1.2 file. A reader of format 1.0 or 1.1 ignores the compensators, the soft labels "
        f"and the recipe, and sees only the {facts.num_images} natural images with hard labels."
    )
    return "\n\n".join(parts)


def hub_license(text: str) -> tuple[str, str | None]:
    """Map a dataset spec's free-text license to a Hub id: ``(id, None)`` or ``("other", license_name)``."""
    raw = (text or "").strip()
    head = re.split(r"[(;,]", raw, maxsplit=1)[0].strip().lower()
    if not head or head in ("unknown", "unspecified", "none"):
        return "unknown", None
    slug = re.sub(r"[^a-z0-9.]+", "-", head).strip("-")
    slug = _LICENSE_ALIASES.get(slug, slug)
    if slug in HUB_LICENSES:
        return slug, None
    name = re.sub(r"[^a-z0-9.]+", "-", raw.lower()).strip("-")[:64].strip("-") or "custom"
    return "other", name


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` bucket for ``n`` rows."""
    for bound, label in _SIZES:
        if n < bound:
            return label
    return "n>1T"


def _tag(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def front_matter(facts: CardFacts, *, with_images: bool) -> dict[str, Any]:
    """The YAML metadata block as a dict (key order as the Hub renders it)."""
    lic, lic_name = hub_license(facts.license)
    meta: dict[str, Any] = {"license": lic}
    if lic_name:
        meta["license_name"] = lic_name
        if facts.sources:  # where the source data's own terms are stated
            meta["license_link"] = facts.sources[0]
    meta["pretty_name"] = f"{facts.dataset} distilled with HaBa + {facts.objective.upper()} (IPC {facts.ipc})"
    meta["task_categories"] = ["image-classification"]
    tags = ["dataset-distillation", "haba", _tag(facts.objective), _tag(facts.dataset), f"ipc-{facts.ipc}"]
    meta["tags"] = list(dict.fromkeys(t for t in tags if t))
    meta["size_categories"] = [size_category(facts.num_images)]
    if facts.hub_id:
        meta["source_datasets"] = [facts.hub_id]
    if with_images:
        meta["configs"] = [
            {"config_name": "default", "default": True, "data_files": [{"split": "train", "path": PARQUET_GLOB}]}
        ]
    else:
        meta["viewer"] = False
    return meta


def _table(rows: list[tuple[str, Any]]) -> str:
    out = ["| | |", "|---|---|"]
    for key, value in rows:
        text = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        out.append(f"| {key} | {text.replace('|', '/')} |")
    return "\n".join(out)


_STORAGE_ROWS = (
    ("bases", "bases"),
    ("hallucinators", "hallucinator parameters"),
    ("soft_labels", "soft labels"),
    ("total", "**total stored**"),
    ("baseline", "a plain set at the same IPC (classes x IPC x C x H x W)"),
    ("zca", "ZCA whitening transform (preprocessing, not counted in the total)"),
)


def _storage_section(facts: CardFacts) -> str:
    st = facts.storage
    rows = [
        (label, f"{st[key]:,}")
        for key, label in _STORAGE_ROWS
        if isinstance(st.get(key), (int, float)) and (key != "zca" or facts.zca)
    ]
    rows += [(k, v) for k, v in st.items() if k not in dict(_STORAGE_ROWS) and k != "ratio"]
    text = "Stored values (numbers, not bytes), from the artifact's own accounting:\n\n" + _table(rows)
    if isinstance(st.get("ratio"), (int, float)):
        text += (
            f"\n\nThe set stores {st['ratio']:.3f}x the values of {facts.ipc} real image(s) per class "
            f"and decodes to {facts.num_images} images ({facts.num_images / max(facts.num_classes, 1):g} per class)."
        )
    return text


def _evaluation_section(evaluation: Any) -> str:
    if evaluation is None:
        return "No evaluation results are stored in this artifact. Run `haba evaluate` (below) to measure them."
    if isinstance(evaluation, Mapping):
        rows = []
        for key, value in evaluation.items():
            if isinstance(value, Mapping) and "mean" in value:
                std = f" ± {value['std']:.4g}" if isinstance(value.get("std"), (int, float)) else ""
                runs = f" ({len(value['accs'])} runs)" if isinstance(value.get("accs"), list) else ""
                mean = value["mean"]
                rows.append((key, f"{mean:.4g}{std}{runs}" if isinstance(mean, (int, float)) else str(mean)))
            else:
                rows.append((key, value))
        return "Stored in the artifact's metadata (`evaluation`):\n\n" + _table(rows)
    return "Stored in the artifact's metadata (`evaluation`):\n\n```json\n" + json.dumps(evaluation, indent=2) + "\n```"


def render_card(
    facts: CardFacts,
    *,
    repo_id: str,
    filename: str,
    with_images: bool,
    preview: str | None = "preview.png",
    source_name: str | None = None,
) -> str:
    """The full ``README.md``: YAML front matter plus the markdown body."""
    meta = front_matter(facts, with_images=with_images)
    yaml_text = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, default_flow_style=False)
    ref = f"hf://datasets/{repo_id}" + ("" if filename == "haba.safetensors" else f"/{filename}")
    obj = facts.objective.lower()
    k = facts.num_hallucinators
    what = (
        f"{facts.num_bases} bases and {k} hallucinators; every basis x hallucinator pair decodes to one "
        f"training image, {facts.num_images} images in all"
        if k
        else f"{facts.num_bases} synthetic images (a plain {facts.objective.upper()} baseline, no hallucinators)"
    )
    lines = [
        "---",
        yaml_text.rstrip("\n"),
        "---",
        "",
        f"# {meta['pretty_name']}",
        "",
        f"A distilled version of **{facts.dataset}** ({facts.num_classes} classes, {facts.channels}x{facts.height}x"
        f"{facts.width}) made with [haba](https://pypi.org/project/haba/): dataset distillation by factorization "
        f"(HaBa, Liu et al., NeurIPS 2022) on top of the {facts.objective.upper()} objective, at a budget of "
        f"{facts.ipc} image(s) per class. It stores {what}.",
        "",
        f"The data is `{filename}`, a safetensors file (no pickle) in the haba artifact format v1"
        + (f" (uploaded from `{source_name}`)" if source_name and source_name != filename else "")
        + ".",
        "",
    ]
    if preview:
        lines += [f"![A grid of decoded images: one row per class]({preview})", ""]
    lines += [
        "## Use it",
        "",
        "```bash",
        "pip install haba",
        "# download through the Hugging Face cache and verify the checksum",
        f"haba pull {repo_id} --out ./{repo_id.split('/')[1]}",
        "# what it holds and what it costs",
        f"haba info {ref}",
        "# decode every basis x hallucinator pair to a labelled image folder",
        f"haba expand {ref} --out ./images",
        "# train fresh networks on it and test them on the real test set",
        f"haba evaluate {ref}",
        "```",
        "",
        "```python",
        "from habacli import load_artifact",
        "from habacli.api import resolve_artifact",
        "",
        f'artifact = load_artifact(resolve_artifact("{ref}"))',
        'images, labels = artifact.decode(device="cpu")  # pixel space, [N, C, H, W] in [0, 1]',
        "```",
        "",
    ]
    if with_images:
        lines += [
            f"The expanded images are also in `{PARQUET_GLOB}` (columns `image`, `label`, `basis`, `hallucinator`):",
            "",
            "```python",
            "from datasets import load_dataset",
            "",
            f'ds = load_dataset("{repo_id}", split="train")',
            "```",
            "",
        ]
    rows: list[tuple[str, Any]] = [
        ("dataset", facts.dataset + (f" (`{facts.hub_id}`)" if facts.hub_id else "")),
        ("classes", facts.num_classes),
        ("image shape", f"{facts.channels}x{facts.height}x{facts.width}"),
        ("objective", facts.objective.upper()),
        ("images per class (budget)", facts.ipc),
        ("bases", facts.num_bases),
        ("hallucinators", k),
        ("decoded images", facts.num_images),
        ("soft labels", "yes" if facts.soft_labels else "no"),
        ("ZCA whitening", "yes" if facts.zca else "no"),
    ]
    if facts.learned_lr is not None:
        rows.append(("learned learning rate", f"{facts.learned_lr:.6g}"))
    if facts.seed is not None:
        rows.append(("seed", facts.seed))
    if facts.sha256:
        rows.append((f"sha256 of `{filename}`", f"`{facts.sha256}`"))
    rows += [("license (of the source data)", facts.license), ("made with", f"haba {facts.haba_version}")]
    lines += ["## What it holds", "", _table(rows), ""]
    if facts.class_names:
        lines += ["Classes, by label: " + ", ".join(f"{i} {n}" for i, n in enumerate(facts.class_names)), ""]
    lines += ["## Storage", ""]
    if facts.storage:
        lines += [_storage_section(facts), ""]
    else:
        lines += ["The artifact carries no storage accounting.", ""]
    if facts.compensators or facts.instance_soft_labels or facts.evaluation_recipe:
        lines += ["## Training recipe", "", _recipe_section(facts), ""]
    lines += ["## Evaluation", "", _evaluation_section(facts.evaluation), ""]
    lines += ["## Citation", "", "If you use this data, please cite:", ""]
    cites = []
    if k:
        cites.append(("Dataset Distillation via Factorization (HaBa)", "2210.16774", HABA_BIBTEX))
    if facts.compensators:
        cites.append(
            (
                "Breaking Class Barriers: Efficient Dataset Distillation via Inter-Class Feature Compensator (INFER)",
                "2408.06927",
                INFER_BIBTEX,
            )
        )
    if obj in OBJECTIVE_CITATIONS:
        cites.append(OBJECTIVE_CITATIONS[obj])
    for title, arxiv, _ in cites:
        lines += [f"- {title}, [arXiv:{arxiv}](https://arxiv.org/abs/{arxiv})"]
    if cites:
        lines += ["", "```bibtex", "\n\n".join(c[2] for c in cites), "```", ""]
    lines += ["The source data keeps its own license and citation: see its dataset card.", ""]
    return "\n".join(lines)
