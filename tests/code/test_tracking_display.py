"""How figures and pictures reach the MLflow UI: metric precision, the comparison table's rows,
the shared runs view's columns and the pictures the chart view lines up run by run."""

from __future__ import annotations

import json
import math

import mlflow
import numpy as np
from mlflow import MlflowClient
from PIL import Image

from components import record
from components.contracts import PipelineSummary, RegisteredVersion, ShardResult, ValidateResult
from components.evaluation import compare


def test_rounded_metric_has_four_decimals_and_no_float_noise():
    assert repr(record.rounded_metric(0.9407430000000001)) == "0.9407"
    # round() on a float32 stays float32 and widens to 0.8744999766... in MLflow's float64.
    assert repr(record.rounded_metric(np.float32(0.8745))) == "0.8745"
    assert repr(record.rounded_metric(0.41969653, digits=6)) == "0.419697"


def test_rounded_metric_keeps_small_values_and_counts():
    assert record.rounded_metric(2.3456789e-6) == 2.346e-6, "a learning rate must not round to 0"
    assert record.rounded_metric(123456) == 123456.0
    assert record.rounded_metric(0) == 0.0 and math.isnan(record.rounded_metric(float("nan")))
    assert record.rounded_metrics({"a": np.float64(0.123456), "b": 1}) == {"a": 0.1235, "b": 1.0}


def _reused(test: dict[str, float]) -> PipelineSummary:
    fingerprint = "0123456789abcdef"
    return PipelineSummary(
        variant="baseline",
        skipped=True,
        positive_class="REAL",
        validated=ValidateResult(report_path="r", quarantine_dir="q", dataset_fingerprint=fingerprint, usable={}, statuses={}),
        sharded=ShardResult(manifest_path="m", shard_key="k", dataset_fingerprint=fingerprint, counts={}, reused=False),
        reused=RegisteredVersion(registered_model="m", version="1", run_id="r", metrics=test, threshold=0.5),
    )


def test_comparison_table_ends_with_calibration_and_worst_robust_auc():
    baseline = {name: 0.8 for name in compare.TABLE_NAMES} | {"calibration/ece": 0.05, "robust/worst_auc": 0.6}
    improved = {name: 0.9 for name in compare.TABLE_NAMES} | {"calibration/ece": np.float32(0.04), "robust/worst_auc": 0.75}
    rows = {row["metric"]: row for row in compare.comparison_rows({"baseline": _reused(baseline), "improved": _reused(improved)})}
    assert list(rows)[-2:] == ["calibration/ece", "robust/worst_auc"]
    assert (rows["calibration/ece"]["baseline"], rows["calibration/ece"]["improved"]) == (0.05, 0.04)
    assert rows["robust/worst_auc"]["relative_change_pct"] == 25.0


def test_comparison_table_shows_nan_for_a_version_registered_before_a_metric_existed():
    older = {name: 0.8 for name in compare.TABLE_NAMES if name not in compare.TRUST_METRICS}
    newer = {name: 0.9 for name in compare.TABLE_NAMES}
    rows = {row["metric"]: row for row in compare.comparison_rows({"baseline": _reused(older), "improved": _reused(newer)})}
    assert math.isnan(rows["calibration/ece"]["baseline"]) and rows["calibration/ece"]["improved"] == 0.9
    assert math.isnan(rows["calibration/ece"]["relative_change_pct"])


def test_three_variants_get_a_column_each_and_a_change_column_each_against_the_first():
    held_out = {"generalisation/glid3/auc": 0.6, "generalisation/mean_auc": 0.6}
    figures = {"baseline": 0.5, "improved": 0.6, "npr": 0.8}
    results = {name: _reused({metric: value for metric in compare.TABLE_NAMES} | held_out) for name, value in figures.items()}
    rows = compare.comparison_rows(results)
    assert list(rows[0]) == ["metric", "baseline", "improved", "npr", "improved_vs_baseline_pct", "npr_vs_baseline_pct"]
    by_metric = {row["metric"]: row for row in rows}
    assert (by_metric["test/auc"]["improved_vs_baseline_pct"], by_metric["test/auc"]["npr_vs_baseline_pct"]) == (20.0, 60.0)
    assert [row["metric"] for row in rows[-2:]] == ["generalisation/glid3/auc", "generalisation/mean_auc"]
    metrics = compare.parent_metrics(rows, list(results))
    assert metrics["npr/test/auc"] == 0.8 and metrics["npr_vs_baseline_pct/test/auc"] == 60.0
    two = compare.comparison_rows({name: results[name] for name in ("baseline", "npr")})
    assert list(two[0]) == ["metric", "baseline", "npr", "relative_change_pct"], "two variants keep the report's table"


def test_shared_runs_view_shows_calibration_and_robustness_columns():
    columns = json.loads(record.runs_view()[1])["selectedColumns"]
    assert {"metrics.`calibration/ece`", "metrics.`robust/worst_auc`", "metrics.`test/auc`"} <= set(columns)


def test_a_picture_is_logged_as_a_file_and_as_an_image_key(tracking_store, tmp_path):
    path = tmp_path / "roc.png"
    Image.new("RGB", (40, 30), "white").save(path)
    with mlflow.start_run() as run:
        record.log_picture(path)
    client = MlflowClient()
    assert [item.path for item in client.list_artifacts(run.info.run_id, "plots")] == ["plots/roc.png"]
    # The key, with "/" as "~", starts the file names MLflow's chart view groups by key.
    images = [item.path for item in client.list_artifacts(run.info.run_id, "images")]
    assert any(name.startswith("images/plots~roc+step+0+") and name.endswith(".png") for name in images), images
    assert client.get_run(run.info.run_id).data.tags["mlflow.loggedImages"] == "True"
