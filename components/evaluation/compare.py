"""The origin report's comparison table: metric, baseline, improved, relative change; a column
per variant when a comparison runs more (`detector compare --variants`), each changed relative
to the first.

The pipeline runs hang under one MLflow parent run, so the UI shows one execution as a group
and its compare view lines the variants up. The parent carries the table itself (as its
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
from components.config import GENERALISATION_METRIC, HELD_OUT_PREFIX
from components.contracts import CompareConfig, CompareResult, PipelineSummary

TABLE_METRICS = ("accuracy", "auc", "pr_auc", "precision", "recall", "f1", "specificity")
TUNED_METRICS = ("threshold", "accuracy", "precision", "recall", "f1", "specificity")
# Then when to trust a verdict: calibration and the worst AUC under degradation, from
# components/evaluation/trust.py; evaluate.flat_test_metrics carries them into PipelineSummary.test.
TRUST_METRICS = ("calibration/ece", "robust/worst_auc")
TABLE_NAMES = (*(f"test/{name}" for name in TABLE_METRICS), *(f"test_tuned/{name}" for name in TUNED_METRICS), *TRUST_METRICS)
# The report's one change column; with more than two variants, one per variant (`npr_vs_baseline_pct`).
REPORT_CHANGE = "relative_change_pct"


def start_parent_run(experiment_name: str, run_name: str, params: dict[str, Any]) -> str:
    experiment = mlflow.set_experiment(experiment_name)
    client = MlflowClient()
    note = "Comparison in progress: the variants' runs appear below this run as they finish."
    run = client.create_run(experiment.experiment_id, run_name=run_name, tags={"kind": "comparison", record.NOTE_TAG: note})
    for key, value in params.items():
        client.log_param(run.info.run_id, key, value)
    client.set_experiment_tag(experiment.experiment_id, *record.runs_view())
    return run.info.run_id


def versus(variant: str, reference: str) -> str:
    """The name of a variant's change relative to the reference: a column, and the parent's metric prefix."""
    return f"{variant}_vs_{reference}_pct"


def change_columns(variants: list[str]) -> dict[str, str]:
    """Each variant after the first, and the column that holds its change relative to the first."""
    reference, *others = variants
    if len(others) == 1:
        return {others[0]: REPORT_CHANGE}
    return {variant: versus(variant, reference) for variant in others}


def comparison_rows(results: dict[str, PipelineSummary]) -> list[dict[str, Any]]:
    """Test metrics at 0.5 (the report's cut), then at each variant's own tuned threshold, then
    calibration and robustness, then each held-out test set's AUC. A version registered before
    a metric existed shows it as NaN."""
    variants = list(results)
    held_out = {name for result in results.values() for name in result.test if name.startswith(HELD_OUT_PREFIX)}
    names = [*TABLE_NAMES, *sorted(held_out, key=lambda name: (name == GENERALISATION_METRIC, name))]  # the mean last
    rows = []
    for name in names:
        row: dict[str, Any] = {"metric": name}
        row |= {variant: record.rounded_metric(result.test.get(name, float("nan"))) for variant, result in results.items()}
        reference = row[variants[0]]
        for variant, column in change_columns(variants).items():
            row[column] = round((row[variant] - reference) / reference * 100, 1) if reference else float("nan")
        rows.append(row)
    return rows


def parent_metrics(rows: list[dict[str, Any]], variants: list[str]) -> dict[str, float]:
    """Every variant's absolute figures (`baseline/test/auc`, …) beside the relative changes
    (`improved_vs_baseline_pct/test/auc`, …)."""
    metrics: dict[str, float] = {}
    for row in rows:
        for variant in variants:
            metrics[f"{variant}/{row['metric']}"] = row[variant]
        for variant, column in change_columns(variants).items():
            metrics[f"{versus(variant, variants[0])}/{row['metric']}"] = row[column]
    return metrics


def parent_note(cfg: CompareConfig, markdown: str) -> str:
    variants = list(cfg.results)
    positive = cfg.results[variants[0]].positive_class
    # The table comes first: the run page folds a description after its first lines.
    lines = [
        f"**{' vs '.join(variants)}** on the same shards (positive class {positive}):",
        "",
        markdown,
        "",
        "`test/*` at threshold 0.5, `test_tuned/*` at each variant's threshold tuned on validation; "
        "`calibration/ece` is the expected calibration error (lower is better), `robust/worst_auc` the lowest "
        f"test AUC under JPEG, resizing or blur; `{HELD_OUT_PREFIX}<set>/*` are the held-out test sets (data.test_sets); "
        f"the change columns are relative to {variants[0]}. The variants' runs hang below this one.",
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
            mlflow.log_metrics(parent_metrics(rows, list(cfg.results)))
            mlflow.set_tags(
                {
                    "dataset_fingerprint": next(iter(cfg.results.values())).sharded.dataset_fingerprint,
                    record.NOTE_TAG: parent_note(cfg, markdown),
                }
            )
    return CompareResult(table_path=str(table_path), markdown=markdown, rows=rows)


def main(argv: list[str] | None = None) -> None:
    component_main("detector compare-table", __doc__, CompareConfig, run, argv)


if __name__ == "__main__":
    main()
