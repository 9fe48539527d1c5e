"""The quality summary: per variant, clean test figures, calibration, the robustness table and the
held-out test sets, read back from each variant's MLflow run so trained, resumed and reused runs
print alike."""

from __future__ import annotations

import pandas as pd
from mlflow import MlflowClient

from components.config import GENERALISATION_METRIC, HELD_OUT_PREFIX
from components.evaluation.robustness import CONDITION_NAMES

CLEAN = (("test/auc", "AUC"), ("test/accuracy", "accuracy@0.5"), ("test_tuned/accuracy", "accuracy@tuned"), ("calibration/ece", "ECE"))


def run_metrics(run_ids: dict[str, str]) -> dict[str, dict[str, float]]:
    """Each variant's run's metrics, read once for every table below."""
    client = MlflowClient()
    return {variant: client.get_run(run_id).data.metrics for variant, run_id in run_ids.items()}


def summary(metrics: dict[str, dict[str, float]]) -> tuple[str, str]:
    """(clean table, robustness table) as markdown, one column per variant of `run_metrics`."""
    clean = pd.DataFrame(
        [{"metric": label, **{variant: _rounded(found.get(name)) for variant, found in metrics.items()}} for name, label in CLEAN]
    )
    robust = pd.DataFrame(
        [
            {
                "condition": condition,
                **{
                    f"{variant} {kind}": _rounded(found.get(f"robust/{condition}/{kind}"))
                    for variant, found in metrics.items()
                    for kind in ("auc", "accuracy")
                },
            }
            for condition in CONDITION_NAMES
        ]
    )
    return _markdown(clean), _markdown(robust)


def held_out(metrics: dict[str, dict[str, float]]) -> str | None:
    """Per held-out test set (data.test_sets), each variant's AUC and share of fakes caught at its
    tuned threshold, then the mean AUC; None when no run of `run_metrics` scored any."""
    names = sorted({name.split("/")[1] for found in metrics.values() for name in found if name.startswith(HELD_OUT_PREFIX)} - {"mean_auc"})
    if not names:
        return None
    rows = [
        {
            "set": name,
            **{
                f"{variant} {kind}": _rounded(found.get(f"{HELD_OUT_PREFIX}{name}/{kind}"))
                for variant, found in metrics.items()
                for kind in ("auc", "fakes_caught")
            },
        }
        for name in names
    ]
    rows.append({"set": "mean", **{f"{variant} auc": _rounded(found.get(GENERALISATION_METRIC)) for variant, found in metrics.items()}})
    return _markdown(pd.DataFrame(rows))


def _markdown(table: pd.DataFrame) -> str:
    """A figure a run did not log shows as `-`: pandas holds it as NaN, which would print as `nan`."""
    return table.astype(object).where(table.notna(), None).to_markdown(index=False, missingval="-")


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
