"""The learning-curves picture a training run logs to MLflow, and `save_png`, which evaluation's
plots use too. Here, not beside those plots, so that training never imports evaluation."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: training hosts and CI have no display

import matplotlib.pyplot as plt  # noqa: E402

CURVE_METRICS = ("loss", "accuracy", "auc", "learning_rate")


def learning_curves(history: list[dict[str, float]], path: Path, title: str) -> Path:
    figure, axes = plt.subplots(1, len(CURVE_METRICS), figsize=(4 * len(CURVE_METRICS), 3.2))
    epochs = [row["epoch"] + 1 for row in history]
    for axis, name in zip(axes, CURVE_METRICS):
        for prefix, style in (("", "-o"), ("val_", "--o")):
            values = [row.get(prefix + name) for row in history]
            if any(value is not None for value in values):
                axis.plot(epochs, values, style, markersize=3, label=f"{'val' if prefix else 'train'}")
        axis.set_title(name)
        axis.set_xlabel("epoch")
        axis.legend()
    figure.suptitle(title)
    return save_png(figure, path)


def save_png(figure: plt.Figure, path: Path) -> Path:
    """Laid out, at 100 dpi, and closed: a process that draws many figures must not keep them open."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
