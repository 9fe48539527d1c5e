"""Calibration: does a score of 0.8 mean right four times in five? ECE and a reliability diagram.

Expected calibration error as Guo et al. (2017) define it, with equal-width bins over the
probability the model gives its own verdict's class, so a perfectly calibrated detector scores 0.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  after the backend is chosen

BINS = 15


def reliability(y_true: np.ndarray, scores: np.ndarray, bins: int = BINS) -> dict:
    """Per bin of P(positive): mean score, observed positive rate, count; and the ECE over them."""
    y_true, scores = np.asarray(y_true).ravel(), np.asarray(scores, dtype=float).ravel()
    confidence = np.where(scores >= 0.5, scores, 1.0 - scores)
    correct = (scores >= 0.5).astype(int) == y_true
    edges = np.linspace(0.5, 1.0, bins // 2 + 2)
    ece = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence >= low) & ((confidence < high) | (high == 1.0))
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(scores, edges) - 1, 0, bins - 1)
    rows = [
        {
            "mean_score": float(scores[index == b].mean()),
            "positive_rate": float(y_true[index == b].mean()),
            "count": int((index == b).sum()),
        }
        for b in range(bins)
        if (index == b).any()
    ]
    return {"ece": float(ece), "bins": rows}


def plot(table: dict, positive: str, path: Path, title: str) -> Path:
    """The reliability diagram of `reliability`'s table, its axes on the positive class's scale."""
    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfectly calibrated")
    means = [row["mean_score"] for row in table["bins"]]
    rates = [row["positive_rate"] for row in table["bins"]]
    sizes = [12 + 60 * row["count"] / max(1, max(r["count"] for r in table["bins"])) for row in table["bins"]]
    axis.plot(means, rates, "-", color="tab:blue")
    axis.scatter(means, rates, s=sizes, color="tab:blue", label="test bins (size: count)")
    axis.set_xlabel(f"mean predicted P({positive})")
    axis.set_ylabel(f"observed share of {positive}")
    axis.set_title(f"{title} (positive: {positive})\nECE {table['ece']:.3f}")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
