"""The origin report's comparison table: metric, baseline, improved, relative change.

Both pipeline runs hang under one MLflow parent run, so the UI shows one execution as a group
and its compare view lines the two variants up. The parent carries the table itself (as its
description, as CSV, Markdown and HTML artifacts, and as `baseline/…`, `improved/…` metrics).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient

from components import record
from components.cli_support import component_main
from components.contracts import CompareConfig, CompareResult, PipelineSummary

TABLE_METRICS = ("accuracy", "auc", "pr_auc", "precision", "recall", "f1", "specificity")
TUNED_METRICS = ("threshold", "accuracy", "precision", "recall", "f1", "specificity")
# Then when to trust a verdict: calibration and the worst AUC under degradation, from
# components/evaluation/trust.py; evaluate.flat_test_metrics carries them into PipelineSummary.test.
TRUST_METRICS = ("calibration/ece", "robust/worst_auc")
TABLE_NAMES = (*(f"test/{name}" for name in TABLE_METRICS), *(f"test_tuned/{name}" for name in TUNED_METRICS), *TRUST_METRICS)
CHANGE_PREFIX = "improved_vs_baseline_pct/"


def start_parent_run(experiment_name: str, run_name: str, params: dict[str, Any]) -> str:
    experiment = mlflow.set_experiment(experiment_name)
    client = MlflowClient()
    note = "Comparison in progress: the baseline and improved runs appear below this run as they finish."
    run = client.create_run(experiment.experiment_id, run_name=run_name, tags={"kind": "comparison", record.NOTE_TAG: note})
    for key, value in params.items():
        client.log_param(run.info.run_id, key, value)
    client.set_experiment_tag(experiment.experiment_id, *record.runs_view())
    return run.info.run_id


def comparison_rows(results: dict[str, PipelineSummary]) -> list[dict[str, Any]]:
    """Test metrics at 0.5 (the report's cut), then at each variant's own tuned threshold, then
    calibration and robustness. A version registered before a metric existed shows it as NaN."""
    rows = []
    for name in TABLE_NAMES:
        baseline = record.rounded_metric(results["baseline"].test.get(name, float("nan")))
        improved = record.rounded_metric(results["improved"].test.get(name, float("nan")))
        change = (improved - baseline) / baseline * 100 if baseline else float("nan")
        rows.append({"metric": name, "baseline": baseline, "improved": improved, "relative_change_pct": round(change, 1)})
    return rows


def parent_metrics(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Both variants' absolute figures (`baseline/test/auc`, …) beside the relative changes."""
    metrics: dict[str, float] = {}
    for row in rows:
        for variant in ("baseline", "improved"):
            metrics[f"{variant}/{row['metric']}"] = row[variant]
        metrics[CHANGE_PREFIX + row["metric"]] = row["relative_change_pct"]
    return metrics


def parent_note(cfg: CompareConfig, markdown: str) -> str:
    positive = cfg.results["improved"].positive_class
    # The table comes first: the run page folds a description after its first lines.
    lines = [
        f"**baseline vs improved** on the same shards (positive class {positive}):",
        "",
        markdown,
        "",
        "`test/*` at threshold 0.5, `test_tuned/*` at each variant's threshold tuned on validation; "
        "`calibration/ece` is the expected calibration error (lower is better), `robust/worst_auc` the lowest "
        "test AUC under JPEG, resizing or blur; `improved_vs_baseline_pct/*` is the relative change. "
        "The two runs hang below this one.",
        "",
        "Registry:",
    ]
    for variant, result in cfg.results.items():
        lines.append(f"- {variant}: {result.registered_model} v{result.version} ({result.decision})")
    if cfg.changed_settings:
        lines += ["", "Settings that differ:", "", pd.DataFrame(cfg.changed_settings).to_markdown(index=False)]
    return "\n".join(lines)


def run(cfg: CompareConfig) -> CompareResult:
    rows = comparison_rows(cfg.results)
    table = pd.DataFrame(rows)
    out_dir = Path(cfg.work_dir) / "comparison" / (cfg.parent_run_id or "latest")
    out_dir.mkdir(parents=True, exist_ok=True)
    table_path = out_dir / "comparison.csv"
    table.to_csv(table_path, index=False)
    markdown = table.to_markdown(index=False)
    (out_dir / "comparison.md").write_text(markdown + "\n")
    (out_dir / "comparison.html").write_text(table.to_html(index=False, border=0) + "\n")
    if cfg.parent_run_id:
        # Leaving the with-block marks the parent run FINISHED.
        with mlflow.start_run(run_id=cfg.parent_run_id):
            for name in ("comparison.csv", "comparison.md", "comparison.html"):
                mlflow.log_artifact(str(out_dir / name), artifact_path="comparison")
            mlflow.log_metrics(parent_metrics(rows))
            mlflow.set_tags(
                {
                    "dataset_fingerprint": cfg.results["improved"].sharded.dataset_fingerprint,
                    record.NOTE_TAG: parent_note(cfg, markdown),
                }
            )
    return CompareResult(table_path=str(table_path), markdown=markdown, rows=rows)


def main(argv: list[str] | None = None) -> None:
    component_main("detector compare-table", __doc__, CompareConfig, run, argv)


if __name__ == "__main__":
    main()
