"""Evaluation results as files: a learning-curve PNG (matplotlib, lazily) and the JSON document.
(The terminal table is the CLI's: :func:`habacli.cli.evaluate.results_table`.)"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from habacli.errors import ConfigError
from habacli.runtime.atomic import atomic_path

if TYPE_CHECKING:  # pragma: no cover
    from habacli.evaluate.run import EvalResult


def save_curves(result: EvalResult, path: str | os.PathLike) -> None:
    """Write a PNG with the mean training loss per epoch and, if recorded, the test accuracy curve
    of every model (mean over runs; shaded: min..max over runs). Written atomically."""
    try:
        import matplotlib  # lazy: matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt  # lazy: matplotlib
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ConfigError("--curve needs matplotlib (pip install matplotlib)") from e
    import numpy as np  # lazy: numpy

    has_test = any(any(c for c in r.test_curves) for r in result.models.values())
    fig, axes = plt.subplots(1, 2 if has_test else 1, figsize=(11 if has_test else 6, 4), squeeze=False)
    ax_loss = axes[0][0]
    for name, r in result.models.items():
        curves = [c for c in r.train_loss_curves if c]
        if not curves:
            continue
        arr = np.array(curves, dtype=float)
        ep = np.arange(1, arr.shape[1] + 1)
        ax_loss.plot(ep, arr.mean(0), label=name)
        if arr.shape[0] > 1:
            ax_loss.fill_between(ep, arr.min(0), arr.max(0), alpha=0.2)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss (mean over runs)")
    ax_loss.set_yscale("log")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend()
    if has_test:
        ax = axes[0][1]
        for name, r in result.models.items():
            curves = [c for c in r.test_curves if c]
            if not curves:
                continue
            n = min(len(c) for c in curves)
            xs = np.array([p[0] for p in curves[0][:n]])
            arr = np.array([[100 * p[1] for p in c[:n]] for c in curves])
            ax.plot(xs, arr.mean(0), marker="o", markersize=3, label=name)
            if arr.shape[0] > 1:
                ax.fill_between(xs, arr.min(0), arr.max(0), alpha=0.2)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy % (mean over runs)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{result.source} ({result.dataset})", fontsize=10)
    fig.tight_layout()
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=120)
    finally:
        plt.close(fig)


def result_json(result: EvalResult, *, curves: bool = False) -> dict[str, Any]:
    """The ``--json`` document."""
    return result.to_dict(curves=curves)
