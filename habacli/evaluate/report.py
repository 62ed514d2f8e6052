"""Rendering of evaluation results: a rich table and a learning-curve PNG (matplotlib, lazily)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from rich.table import Table

    from habacli.evaluate.run import EvalResult


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def results_table(result: EvalResult) -> Table:
    """One row per model: mean +- std (%), runs, each run's accuracy."""
    from rich.table import Table

    s = result.settings
    what = f"{result.source} ({result.dataset}"
    if s.get("baseline") == "random":
        what += f", {s['ipc']} random real images per class"
    else:
        what += f", {s.get('num_bases', '?')} bases x {s.get('num_hallucinators', 0)} hallucinators, {s.get('expansion')} expansion"
    what += ")"
    table = Table(title=f"haba evaluate: {what}", title_justify="left", min_width=96)
    table.add_column("model", style="bold")
    table.add_column("accuracy %", justify="right", style="green")
    table.add_column("runs", justify="right")
    table.add_column("per run %", style="dim")
    for name, r in result.models.items():
        table.add_row(name, f"{_pct(r.mean)} ± {_pct(r.std)}", str(len(r.accuracies)),
                      " ".join(_pct(a) for a in r.accuracies))
    lr_note = f"lr {s['lr']:g} ({s['lr_source']})"
    table.caption = (f"{s['epochs_run']} epochs, {lr_note}, batch {s['batch_size']}, DSA {s['dsa']}"
                     f"{', ZCA' if s.get('zca') else ''}{', bf16 autocast' if s.get('amp') else ''}; "
                     f"tested on all {s['test_images']} real test images; ± is the {s['std']}; "
                     f"seed {s['seed']}, {s['device']}, {result.wall_time_s:.1f} s")
    table.caption_justify = "left"
    return table


def save_curves(result: EvalResult, path: str | os.PathLike) -> None:
    """Write a PNG with the mean training loss per epoch and, if recorded, the test accuracy curve
    of every model (mean over runs; shaded: min..max over runs). Written atomically."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - depends on the environment
        from habacli.errors import ConfigError

        raise ConfigError("--curve needs matplotlib (pip install matplotlib)") from e
    import numpy as np

    from habacli.runtime.atomic import atomic_path

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
