"""Batch scoring against the shared tiny run's @champion, in its real MLflow store: rows, summary,
the MLflow run with its drift report, reuse of unchanged images, and drift that can fire."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from components.serving import predict, score
from tests.conftest import TrainedRun


def _folder(trained_run: TrainedRun, target: Path) -> Path:
    """Six of the test split's images, a corrupt one and an unsupported one, in two subfolders."""
    for label in ("REAL", "FAKE"):
        (target / label.lower()).mkdir(parents=True)
        for path in sorted((Path(trained_run.data.root) / "test" / label).iterdir())[:3]:
            shutil.copyfile(path, target / label.lower() / path.name)
    (target / "fake" / "broken.jpg").write_bytes(b"\xff\xd8\xff broken")
    (target / "real" / "notes.txt").write_text("not an image")
    return target


def _config(images: Path, out: Path, trained_run: TrainedRun, **changes) -> score.ScoreConfig:
    champion = f"models:/{trained_run.registered_model}@champion"
    return score.ScoreConfig(images=str(images), output_dir=str(out), model_uri=champion, **changes)


def test_score_writes_a_row_per_image_a_summary_and_an_mlflow_run_with_drift(trained_run: TrainedRun, trained_store, tmp_path: Path):
    images = _folder(trained_run, tmp_path / "incoming")
    result = score.run(_config(images, tmp_path / "scores", trained_run))
    rows = pd.read_csv(result.rows_path).set_index("path")
    assert len(rows) == 8 and result.scored == 6 and result.failed == 2 and result.reused == 0
    assert rows.loc["fake/broken.jpg", "error"] and pd.isna(rows.loc["fake/broken.jpg", "p_ai_generated"])
    assert rows.loc["real/notes.txt", "error"].startswith("not an image in an accepted format")
    expected = predict.run(predict.PredictConfig(images=str(images / "real"), model_uri=f"models:/{trained_run.registered_model}@champion"))
    for prediction in expected.predictions:  # one scoring path: the row is predict's answer
        assert rows.loc[f"real/{Path(prediction.path).name}", "p_ai_generated"] == pytest.approx(prediction.p_ai_generated, abs=1e-5)
    assert set(rows["verdict"].dropna()) <= {"AI-generated", "real"} and set(rows["model_version"].astype(str)) == {"1"}
    summary = json.loads(Path(result.summary_path).read_text())
    assert summary["share_flagged"] == pytest.approx((rows["verdict"] == "AI-generated").sum() / 6)
    # The test split itself, scored by its own model: the score's drift is measured, and small.
    assert set(result.drift) == {"p_ai_generated", "width", "height", "brightness", "format"}
    client = MlflowClient()
    run = client.get_run(result.run_id)
    assert run.data.metrics["scored"] == 6 and run.data.tags["model_version"] == "1"
    assert "drift/psi/p_ai_generated" in run.data.metrics
    artifacts = {item.path for item in client.list_artifacts(result.run_id)}
    assert {"scores.csv", "summary.json", "drift.html", "score_histogram.png"} <= artifacts


def test_unchanged_images_are_not_scored_again_by_the_same_version(trained_run: TrainedRun, trained_store, tmp_path: Path):
    images = _folder(trained_run, tmp_path / "incoming")
    first = score.run(_config(images, tmp_path / "scores", trained_run, format="parquet"))
    extra = sorted((Path(trained_run.data.root) / "test" / "REAL").iterdir())[3]  # not among the first six
    shutil.copyfile(extra, images / "real" / "new.png")
    second = score.run(_config(images, tmp_path / "scores", trained_run, format="parquet"))
    assert (first.reused, second.reused, second.scored) == (0, 6, 7)
    rows = pd.read_parquet(second.rows_path).set_index("path")
    assert 0 <= rows.loc["real/new.png", "p_ai_generated"] <= 1


def test_drift_fires_on_a_shift_and_stays_quiet_without_one(tmp_path: Path):
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"p_ai_generated": rng.uniform(size=400), "brightness": rng.normal(0.5, 0.1, 400), "format": ["PNG"] * 400})
    same = pd.DataFrame({"p_ai_generated": rng.uniform(size=400), "brightness": rng.normal(0.5, 0.1, 400), "format": ["PNG"] * 400})
    shifted = pd.DataFrame({"p_ai_generated": rng.uniform(0.8, 1, 400), "brightness": rng.normal(0.8, 0.1, 400), "format": ["JPEG"] * 400})
    quiet, quiet_warnings, _ = score._drift(same, reference, "1", tmp_path, 0.2)
    loud, loud_warnings, report = score._drift(shifted, reference, "1", tmp_path, 0.2)
    assert max(quiet.values()) < 0.1 and not quiet_warnings
    assert min(loud.values()) > 1 and {warning.split(":")[0] for warning in loud_warnings} == {"p_ai_generated", "brightness", "format"}
    assert report.read_text().lstrip().lower().startswith("<!doctype html") or "<html" in report.read_text()[:500].lower()
