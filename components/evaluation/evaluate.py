"""Evaluate a trained model on the test split, with a decision threshold tuned on validation.

The origin report used 0.5; its reference paper tuned the threshold (0.6587) from the ROC
curve. We pick Youden's J on the validation split, never on test, and report test figures at
both thresholds. Scores are the probability of the positive class, named in every output.
Held-out test sets (data.test_sets) are scored at the same cut (components/evaluation/generalisation.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd

from components import record
from components.cli_support import component_main
from components.contracts import EvaluateConfig, EvaluateResult
from components.data.reader import installed_reader, make_dataset
from components.data.schema import read_manifest
from components.data.shard_reader import read_sources
from components.evaluation import generalisation, plots, trust
from components.evaluation.compare import TRUST_METRICS
from components.evaluation.metrics import classification_metrics, ranking_metrics, youden_threshold
from components.registry import loading
from components.registry.gate import VALIDATION_SCORES
from components.training.model import ImageNetPreprocess  # noqa: F401  registers the layer for load_model


def run(cfg: EvaluateConfig) -> EvaluateResult:
    manifest = read_manifest(cfg.manifest_path)
    model = loading.load_file(cfg.model_path)
    val_true, val_scores, _ = predict_split(model, cfg.manifest_path, "val", cfg.batch_size)
    test_true, test_scores, test_brightness = predict_split(model, cfg.manifest_path, "test", cfg.batch_size)
    threshold = youden_threshold(val_true, val_scores)
    splits = generalisation.held_out_splits(manifest)
    held_out = {split: predict_split(model, cfg.manifest_path, split, cfg.batch_size)[:2] for split in splits}
    sets = generalisation.table(manifest, held_out, threshold)
    report = {
        "positive_class": manifest.positive_class,
        "labels": manifest.labels,
        "score": f"probability of {manifest.positive_class}",
        "threshold_tuned_on": "val (Youden's J)",
        "tuned_threshold": threshold,
        "dataset_fingerprint": manifest.dataset_fingerprint,
        "val": {**ranking_metrics(val_true, val_scores), "at_0.5": classification_metrics(val_true, val_scores, 0.5)},
        "test": {
            **ranking_metrics(test_true, test_scores),
            "count": int(len(test_true)),
            "at_0.5": classification_metrics(test_true, test_scores, 0.5),
            "at_tuned": classification_metrics(test_true, test_scores, threshold),
        },
        "held_out": sets.to_dict("records"),
    }
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = out_dir / "metrics.json"
    metrics_path.write_text(json.dumps(report, indent=2))
    pictures = _pictures(report, manifest.class_names, test_true, test_scores, out_dir)
    trusted, trust_pictures, trust_summary = trust.assess(model, manifest, cfg.manifest_path, test_true, test_scores, threshold, out_dir)
    flat = flat_test_metrics(report, trusted) | record.rounded_metrics(generalisation.flat_metrics(sets))
    # The same cut on the scale users read (components/registry/tags.py names both).
    flat["test_tuned/threshold_p_ai"] = record.rounded_metric(manifest.p_generated(threshold), digits=6)
    (out_dir / "trust.json").write_text(json.dumps(trust_summary, indent=2))
    held_out_tables, held_out_pictures = generalisation.write(sets, report["test"]["auc"], out_dir)
    references = [
        validation_scores(manifest, cfg.manifest_path, val_true, val_scores, out_dir),
        *drift_reference(manifest, test_true, test_scores, test_brightness, out_dir),
        *held_out_tables,
    ]
    if cfg.run_id:
        with mlflow.start_run(run_id=cfg.run_id):
            mlflow.log_metrics({**record.rounded_metrics(trusted), **flat})
            mlflow.log_artifact(str(metrics_path), artifact_path="evaluation")
            mlflow.log_artifact(str(out_dir / "trust.json"), artifact_path="evaluation")
            for reference in references:
                mlflow.log_artifact(str(reference), artifact_path="evaluation")
            for picture in [*pictures, *trust_pictures, *held_out_pictures]:
                record.log_picture(picture)
    return EvaluateResult(metrics_path=str(metrics_path), positive_class=manifest.positive_class, threshold=threshold, test=flat)


def predict_split(model: keras.Model, manifest_path: str, split: str, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, scores, brightness) for every example once, in order, as NumPy: any backend's
    model takes it (a TF tensor would not do for JAX). Brightness is the mean pixel over 255."""
    labels, scores, brightness = [], [], []
    for images, batch_labels in make_dataset(manifest_path, split, batch_size, reader=installed_reader()):
        pixels = np.asarray(images)
        scores.append(np.asarray(model.predict_on_batch(pixels)).ravel())
        labels.append(np.asarray(batch_labels).ravel())
        brightness.append(pixels.reshape(len(pixels), -1).mean(axis=1) / 255.0)
    return np.concatenate(labels).astype(int), np.concatenate(scores), np.concatenate(brightness)


def validation_scores(manifest, manifest_path: str, labels: np.ndarray, scores: np.ndarray, out_dir: Path) -> Path:
    """Each validation image's P(AI-generated), keyed by its source path: what the promotion gate
    pairs with the champion's scores on the same images (components/registry/gate.py)."""
    generated = (labels == manifest.labels[manifest.generated_class]).astype(int)
    p_generated = manifest.p_generated(scores)
    sources = read_sources(manifest.paths("val", Path(manifest_path).parent))
    path = out_dir / Path(VALIDATION_SCORES).name
    pd.DataFrame({"source": sources, "generated": generated, "p_ai_generated": p_generated}).to_csv(path, index=False)
    return path


def drift_reference(manifest, labels: np.ndarray, scores: np.ndarray, brightness: np.ndarray, out_dir: Path) -> list[Path]:
    """What batch scoring measures drift against (components/serving/score.py): the test split's
    P(AI-generated) and brightness, and its original images' size and format from the validation
    report (when it is still on this machine)."""
    names = {index: name for name, index in manifest.labels.items()}
    scores_path = out_dir / "test_scores.csv"
    p_generated = manifest.p_generated(scores)
    table = pd.DataFrame({"label": [names[int(label)] for label in labels], "p_ai_generated": p_generated, "brightness": brightness})
    table.to_csv(scores_path, index=False)
    report = Path(manifest.source.validation_report)
    if not report.is_file():
        return [scores_path]
    rows = pd.read_csv(report)
    test = rows[(rows["split"] == "test") & (rows["status"] == "ok")]
    images_path = out_dir / "test_images.csv"
    test[["width", "height", "format"]].to_csv(images_path, index=False)
    return [scores_path, images_path]


def flat_test_metrics(report: dict, trusted: dict[str, float]) -> dict[str, float]:
    """A run's summary metrics, as MLflow logs them and EvaluateResult.test carries them: test/auc,
    test/accuracy, … at 0.5, test_tuned/* (the tuned cut itself as test_tuned/threshold),
    val/auc_final, and the trust figures the comparison table shows (compare.TRUST_METRICS). The "/"
    makes the MLflow UI group them."""
    test = report["test"]
    flat = {"test/auc": test["auc"], "test/pr_auc": test["pr_auc"], "val/auc_final": report["val"]["auc"]}
    for group, key in (("test", "at_0.5"), ("test_tuned", "at_tuned")):
        for name in ("accuracy", "precision", "recall", "f1", "specificity"):
            flat[f"{group}/{name}"] = test[key][name]
    flat.update({name: trusted[name] for name in TRUST_METRICS})
    rounded = record.rounded_metrics(flat)  # metrics.json and trust.json keep them whole
    # At least six decimals, as precise as registration's threshold tag (components/registry/tags.py):
    # serving reads that tag, or this metric for a version registered without one
    # (components/serving/scoring.py). EvaluateResult.threshold keeps the exact cut.
    rounded["test_tuned/threshold"] = record.rounded_metric(report["tuned_threshold"], digits=6)
    return rounded


def _pictures(report: dict, class_names: list[str], y_true: np.ndarray, scores: np.ndarray, out_dir: Path) -> list[Path]:
    """Every title names the positive class, and so does every axis that depends on it: the
    threshold cuts P(positive), and the rates count the positive class's examples."""
    positive, tuned, test = report["positive_class"], report["tuned_threshold"], report["test"]
    at_half, at_tuned = f"test, P({positive}) ≥ 0.5", f"test, P({positive}) ≥ {tuned:.3f} (tuned on val)"
    return [
        plots.confusion(test["at_0.5"]["confusion_matrix"], class_names, out_dir / "confusion_matrix.png", at_half),
        plots.confusion(test["at_tuned"]["confusion_matrix"], class_names, out_dir / "confusion_matrix_tuned.png", at_tuned),
        plots.roc(y_true, scores, tuned, positive, out_dir / "roc.png", f"test ROC (positive: {positive})"),
        plots.precision_recall(y_true, scores, tuned, positive, out_dir / "precision_recall.png", f"test PR (positive: {positive})"),
    ]


def main(argv: list[str] | None = None) -> None:
    component_main("detector evaluate", __doc__, EvaluateConfig, run, argv)


if __name__ == "__main__":
    main()
