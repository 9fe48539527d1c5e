"""What a user needs to know before trusting a verdict, logged with every evaluated run:
the robustness table, calibration, slices by source format and size, and the error gallery.

evaluate.run calls `assess` once with the test predictions it already has; everything here
reads the test split again only for the pixels the pictures and the degradations need.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from components.contracts import Manifest
from components.data.reader import installed_reader, make_dataset
from components.data.shard_reader import read_sources
from components.evaluation import calibration, gallery, robustness
from components.evaluation.metrics import ranking_metrics

SLICE_COLUMNS = {"format": "format", "size": "size"}


def assess(
    model: keras.Model, manifest: Manifest, manifest_path: str, y_true: np.ndarray, scores: np.ndarray, threshold: float, out_dir: Path
) -> tuple[dict[str, float], list[Path], dict[str, Any]]:
    """(MLflow metrics, PNG paths, a JSON-able summary) for the test split."""
    rows, metrics = robustness.robustness_table(model, manifest, manifest_path, threshold)
    reliability = calibration.reliability(y_true, scores)
    metrics["calibration/ece"] = reliability["ece"]
    slices = slice_metrics(manifest, manifest_path, y_true, scores)
    for column, groups in slices.items():
        for value, figures in groups.items():
            metrics.update({f"slice/{column}={value}/{name}": number for name, number in figures.items()})
    pictures = [
        robustness.plot(rows, manifest.positive_class, out_dir / "robustness.png", "test split under degradations"),
        calibration.plot(reliability, manifest.positive_class, out_dir / "reliability.png", "test calibration"),
        error_gallery(model, manifest, manifest_path, y_true, scores, out_dir / "error_gallery.png"),
    ]
    summary = {"robustness": rows, "calibration": reliability, "slices": slices}
    return metrics, pictures, summary


def slice_metrics(manifest: Manifest, manifest_path: str, y_true: np.ndarray, scores: np.ndarray) -> dict[str, dict[str, dict]]:
    """AUC and accuracy per source format and per source size, for columns with more than one value."""
    report_path = manifest.source.validation_report
    if not report_path or not Path(report_path).is_file():
        return {}
    report = pd.read_csv(report_path, keep_default_na=False)
    report["size"] = report.width.astype(str) + "x" + report.height.astype(str)
    facts = report.set_index("path")
    sources = test_sources(manifest_path)
    out: dict[str, dict[str, dict]] = {}
    for column in SLICE_COLUMNS:
        values = np.array([facts[column].get(source, "unknown") for source in sources])
        if len(set(values)) < 2:
            continue
        out[column] = {}
        for value in sorted(set(values)):
            inside = values == value
            both_classes = len(set(y_true[inside])) == 2
            out[column][value] = {
                "count": int(inside.sum()),
                "accuracy": float(np.mean((scores[inside] >= 0.5).astype(int) == y_true[inside])),
                **({"auc": ranking_metrics(y_true[inside], scores[inside])["auc"]} if both_classes else {}),
            }
    return out


def test_sources(manifest_path: str) -> list[str]:
    """Source paths of the test records, in the order make_dataset reads them."""
    return read_sources(Manifest.read(manifest_path).paths("test", Path(manifest_path).parent))


def error_gallery(model: keras.Model, manifest: Manifest, manifest_path: str, y_true: np.ndarray, scores: np.ndarray, path: Path) -> Path:
    """The gallery under the metrics' convention: `scores` are P(manifest.positive_class)."""
    positive = manifest.positive_class
    negative = next(name for name in manifest.class_names if name != positive)
    picked = gallery.confident_errors(y_true, scores, manifest.labels[positive])
    pixels = _images_at(manifest_path, sorted({index for indices in picked.values() for index in indices}))
    images = {kind: np.stack([pixels[i] for i in indices]) if indices else np.zeros((0, 1, 1, 3)) for kind, indices in picked.items()}
    headings = gallery.kind_headings(_named(manifest, positive), _named(manifest, negative))
    chances = {kind: scores[indices] for kind, indices in picked.items()}
    return gallery.plot(images, chances, headings, gallery.explain(model, images), f"P({positive})", path)


def _named(manifest: Manifest, class_name: str) -> str:
    return f"{class_name} (AI-generated)" if class_name == manifest.generated_class else class_name


def _images_at(manifest_path: str, indices: list[int]) -> dict[int, np.ndarray]:
    found, offset, wanted = {}, 0, set(indices)
    for batch, _ in make_dataset(manifest_path, "test", 64, dtype="uint8", reader=installed_reader()):
        array = np.asarray(batch)
        found.update({offset + i: array[i] for i in range(len(array)) if offset + i in wanted})
        offset += len(array)
    return found
