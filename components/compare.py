"""The origin report's comparison table: metric, baseline, improved, relative change.

Both pipeline runs hang under one MLflow parent run, so the UI shows one execution as a group
and its compare view lines the two variants up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient

from components.cli_support import component_main
from components.config import Strict

TABLE_METRICS = ("accuracy", "auc", "pr_auc", "precision", "recall", "f1", "specificity")
TUNED_METRICS = ("accuracy", "precision", "recall", "f1", "specificity")


class CompareConfig(Strict):
    results: dict[str, dict[str, Any]]  # variant -> train_pipeline summary
    parent_run_id: str | None = None
    work_dir: str = "work"


class CompareResult(Strict):
    table_path: str
    markdown: str
    rows: list[dict[str, Any]]


def start_parent_run(experiment_name: str, profile: str) -> str:
    experiment = mlflow.set_experiment(experiment_name)
    run = MlflowClient().create_run(
        experiment.experiment_id, run_name=f"compare-{profile}", tags={"kind": "comparison", "profile": profile}
    )
    return run.info.run_id


def comparison_rows(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Test metrics at 0.5 (the report's cut), then at each variant's own tuned threshold."""
    names = [f"test_{name}" for name in TABLE_METRICS] + ["tuned_threshold"] + [f"test_tuned_{name}" for name in TUNED_METRICS]
    rows = []
    for name in names:
        baseline = results["baseline"]["evaluated"]["test"][name]
        improved = results["improved"]["evaluated"]["test"][name]
        change = (improved - baseline) / baseline * 100 if baseline else float("nan")
        label = name.removeprefix("test_")
        rows.append(
            {"metric": label, "baseline": round(baseline, 4), "improved": round(improved, 4), "relative_change_pct": round(change, 1)}
        )
    return rows


def run(cfg: CompareConfig) -> CompareResult:
    rows = comparison_rows(cfg.results)
    table = pd.DataFrame(rows)
    out_dir = Path(cfg.work_dir) / "comparison" / (cfg.parent_run_id or "latest")
    out_dir.mkdir(parents=True, exist_ok=True)
    table_path = out_dir / "comparison.csv"
    table.to_csv(table_path, index=False)
    markdown = table.to_markdown(index=False)
    (out_dir / "comparison.md").write_text(markdown + "\n")
    if cfg.parent_run_id:
        # Leaving the with-block marks the parent run FINISHED.
        with mlflow.start_run(run_id=cfg.parent_run_id):
            mlflow.log_artifact(str(table_path), artifact_path="comparison")
            mlflow.log_metrics({f"improved_vs_baseline_{row['metric']}_pct": row["relative_change_pct"] for row in rows})
    return CompareResult(table_path=str(table_path), markdown=markdown, rows=rows)


def main(argv: list[str] | None = None) -> None:
    component_main("detector compare-table", __doc__, CompareConfig, run, argv)


if __name__ == "__main__":
    main()
