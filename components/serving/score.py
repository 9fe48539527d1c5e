"""Batch scoring: every image of a folder (or an s3:// prefix the flow synced into one) scored by
a registry version, @champion by default, through the same preparation and threshold as
`detector predict` and `detector serve` (components/serving/scoring.py).

Writes, in `output_dir`:
- `scores.csv` (or `.parquet`): one row per image: path, sha256, p_ai_generated, verdict,
  model_version, error, and the cheap image statistics drift is measured on (width, height,
  format, brightness);
- `summary.json`: counts, the share flagged, the drift figures and their warnings;
- `drift.html`: Evidently's report.

and logs one MLflow run (experiment `detector-scoring`) with those files, a histogram of the
scores against the version's test split, and the figures as metrics.

Drift is Evidently's `ValueDrift` with PSI, against the version's own test split as evaluation
logged it (`evaluation/test_scores.csv`, `evaluation/test_images.csv`), on the score, the image
size, format and brightness (the mean of the fitted image's pixels, as the model sees them).
A PSI above `psi_warning` (0.2: the usual "significant shift") is a warning in the summary, the
run's `drift_warning` tag and the log; the run never fails for it.

An image whose bytes and version match the last run's is not decoded again: its row is reused
from `score-cache.json`. One unreadable image is its own row with an `error`; it never stops a run.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from PIL import Image

from components import record
from components.cli_support import component_main
from components.contracts import ScoreConfig, ScoreResult
from components.data.images import ACCEPTED_FORMATS, UnusableImage, printable, read_file
from components.data.s3data import missing_after_sync
from components.serving import predict, scoring

LOG = logging.getLogger(__name__)
CACHE = "score-cache.json"
NUMERIC_STATS, CATEGORICAL_STATS = ("p_ai_generated", "width", "height", "brightness"), ("format",)
REFERENCE_SCORES, REFERENCE_IMAGES = "evaluation/test_scores.csv", "evaluation/test_images.csv"
COLUMNS = ["path", "sha256", "p_ai_generated", "verdict", "model_version", "error", "width", "height", "format", "brightness"]


def run(cfg: ScoreConfig) -> ScoreResult:
    root = Path(cfg.images)
    detector = scoring.load_registered(cfg.model_uri)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    cached = _read_cache(out / CACHE, detector.version)
    rows, pending, reused = [], {}, 0
    for path in predict.image_paths(root):
        relative = printable(str(path.relative_to(root)) if root.is_dir() else path.name)
        row = _facts(path, relative)
        if row["sha256"] in cached:
            rows.append({**cached[row["sha256"]], "path": relative})
            reused += 1
        elif row["error"] is not None:
            rows.append({**row, "model_version": detector.version})
        else:
            pending[printable(str(path))] = row
    rows += _score(detector, pending, cfg)
    rows += [_missing(relative, reason, detector.version) for relative, reason in missing_after_sync(root).items()]
    table = pd.DataFrame(rows, columns=COLUMNS).sort_values("path", ignore_index=True)
    _write_cache(out / CACHE, detector.version, table)
    rows_path = _write_rows(table, out, cfg.format)
    reference = _reference(detector.run_id) if detector.run_id else None
    drift, warnings, report = _drift(table, reference, detector.version, out, cfg.psi_warning)
    scored = table["p_ai_generated"].notna()
    flagged = float((table.loc[scored, "verdict"] == scoring.AI_GENERATED).mean()) if scored.any() else None
    summary = {
        "model_uri": cfg.model_uri,
        "model_version": detector.version,
        "images": cfg.source or cfg.images,
        "scored": int(scored.sum()),
        "reused": reused,
        "failed": int((~scored).sum()),
        "share_flagged": flagged,
        "threshold": detector.threshold_ai,
        "drift_psi": drift,
        "drift_warnings": warnings,
    }
    summary_path = out / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2))
    picture = _histogram(table, reference, detector)
    run_id = _log_run(cfg, summary, [rows_path, summary_path, *([report] if report else [])], picture, detector.version)
    return ScoreResult(
        rows_path=str(rows_path),
        summary_path=str(summary_path),
        model_version=detector.version,
        scored=summary["scored"],
        reused=reused,
        failed=summary["failed"],
        share_flagged=flagged,
        drift=drift,
        drift_warnings=warnings,
        run_id=run_id,
    )


def _facts(path: Path, relative: str) -> dict:
    """The file's digest and header facts, read without decoding pixels; an unreadable file is its row."""
    row = dict.fromkeys(COLUMNS)
    row["path"] = relative
    try:
        data, _ = read_file(path)
    except UnusableImage as error:
        return {**row, "sha256": f"unreadable:{relative}", "error": str(error)}
    row["sha256"] = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as image:
            row.update(width=image.width, height=image.height, format=image.format)
    except Exception:  # noqa: BLE001 - the decode step names the reason; the facts stay empty
        pass
    return row


def _score(detector: scoring.Detector, pending: dict[str, dict], cfg: ScoreConfig) -> list[dict]:
    """Decode in guarded workers (as `detector predict` does), batch by batch."""
    if not pending:
        return []
    rows = []
    settings = predict.PredictConfig(images=cfg.images, workers=cfg.workers)
    for kept, pixels, failures in predict.prepared_batches([Path(key) for key in pending], detector, settings):
        for key, reason in failures.items():
            rows.append({**pending[key], "model_version": detector.version, "error": reason})
        for key, image, score in zip(kept, pixels, detector.positive_scores(pixels)):
            answer = detector.answer(float(score))
            rows.append({**pending[key], "p_ai_generated": answer.p_ai_generated, "verdict": answer.verdict,
                         "model_version": detector.version, "brightness": float(image.mean() / 255.0)})  # fmt: skip
    return rows


def _missing(relative: str, reason: str, version: str) -> dict:
    return {**dict.fromkeys(COLUMNS), "path": relative, "sha256": f"missing:{relative}", "model_version": version, "error": reason}


def _read_cache(path: Path, version: str) -> dict[str, dict]:
    """Last run's rows by digest, if that run used this version; a damaged cache is no cache."""
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(cache, dict) or cache.get("model_version") != version:
        return {}
    return {row["sha256"]: row for row in cache.get("rows", []) if isinstance(row, dict) and row.get("p_ai_generated") is not None}


def _write_cache(path: Path, version: str, table: pd.DataFrame) -> None:
    rows = json.loads(table.to_json(orient="records"))
    _atomic(path, json.dumps({"model_version": version, "rows": rows}).encode())


def _write_rows(table: pd.DataFrame, out: Path, fmt: str) -> Path:
    path = out / f"scores.{fmt}"
    buffer = io.BytesIO()
    if fmt == "parquet":
        table.to_parquet(buffer, index=False)
    else:
        table.to_csv(buffer, index=False)
    _atomic(path, buffer.getvalue())
    return path


def _atomic(path: Path, content: bytes) -> None:
    """Readers see the last complete file, never half of one."""
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        handle.write(content)
    os.replace(handle.name, path)


def _reference(run_id: str) -> pd.DataFrame | None:
    """The version's test split as evaluation logged it: scores and brightness, and the originals'
    facts when evaluation still had the validation report (their columns are then measured too)."""
    frames = []
    for name in (REFERENCE_SCORES, REFERENCE_IMAGES):
        try:
            frames.append(pd.read_csv(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/{name}")))
        except Exception:  # noqa: BLE001 - versions evaluated before these were logged have none
            continue
    return pd.concat(frames, axis=1) if frames else None


def _allow_evidently_import() -> None:
    """Evidently 0.7 imports `infer_dtype_from_object`, which pandas 3 removed, in a legacy test
    module this project never runs; only the name is missing, so it is given one before the
    import. The drift figures are checked against known shifts in tests/model/test_score.py."""
    import pandas.core.dtypes.common as common

    if not hasattr(common, "infer_dtype_from_object"):
        common.infer_dtype_from_object = pd.api.types.pandas_dtype


def _drift(
    table: pd.DataFrame, reference: pd.DataFrame | None, version: str, out: Path, limit: float
) -> tuple[dict[str, float], list[str], Path | None]:
    _allow_evidently_import()
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    current = table[table["p_ai_generated"].notna()]
    if reference is None or current.empty:
        reason = "no scored images" if current.empty else f"model version {version} has no logged test-split reference"
        return {}, [f"drift not measured: {reason}"], None
    columns = [column for column in (*NUMERIC_STATS, *CATEGORICAL_STATS) if column in reference and current[column].notna().any()]
    definition = DataDefinition(
        numerical_columns=[column for column in columns if column in NUMERIC_STATS],
        categorical_columns=[column for column in columns if column in CATEGORICAL_STATS],
    )

    def dataset(frame: pd.DataFrame) -> Dataset:
        frame = frame[columns].copy()
        for column in definition.numerical_columns:
            frame[column] = frame[column].astype(float)
        return Dataset.from_pandas(frame, data_definition=definition)

    report = Report([ValueDrift(column=column, method="psi", threshold=limit) for column in columns])
    snapshot = report.run(current_data=dataset(current), reference_data=dataset(reference))
    path = out / "drift.html"
    snapshot.save_html(str(path))
    drift = {column: round(float(value), 4) for column, value in zip(columns, _metric_values(snapshot))}
    warnings = [f"{column}: PSI {value:.3f} above {limit}" for column, value in drift.items() if value > limit]
    for warning in warnings:
        LOG.warning("drift against model version %s's test split: %s", version, warning)
    return drift, warnings, path


def _metric_values(snapshot) -> list[float]:
    """Each ValueDrift's PSI, in the report's order."""
    return [metric["value"] for metric in snapshot.dict()["metrics"]]


def _log_run(cfg: ScoreConfig, summary: dict, files: list[Path], picture, version: str) -> str:
    mlflow.set_experiment(cfg.experiment_name)
    with mlflow.start_run(run_name=f"score-v{version}") as active:
        mlflow.log_params({"model_uri": cfg.model_uri, "model_version": version, "images": summary["images"]})
        metrics = {key: summary[key] for key in ("scored", "reused", "failed", "share_flagged") if summary[key] is not None}
        metrics.update({f"drift/psi/{column}": value for column, value in summary["drift_psi"].items()})
        mlflow.log_metrics(record.rounded_metrics(metrics))
        mlflow.set_tags({"model_version": version, "drift_warning": "yes" if summary["drift_warnings"] else "no"})
        for path in files:
            mlflow.log_artifact(str(path))
        mlflow.log_figure(picture, "score_histogram.png")
        return active.info.run_id


def _histogram(table: pd.DataFrame, reference: pd.DataFrame | None, detector: scoring.Detector):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.5))
    bins = np.linspace(0, 1, 21)
    axes.hist(table["p_ai_generated"].dropna(), bins=bins, density=True, alpha=0.7, label="this run")
    if reference is not None:
        axes.hist(reference["p_ai_generated"].dropna(), bins=bins, density=True, alpha=0.5, label="test split")
    axes.axvline(detector.threshold_ai, color="black", linestyle="--", label=f"threshold {detector.threshold_ai:.3f}")
    axes.set(xlabel="P(AI-generated)", ylabel="density", title=f"Scores, model version {detector.version}")
    axes.legend()
    figure.tight_layout()
    return figure


def main(argv: list[str] | None = None) -> None:
    component_main("detector score", __doc__, ScoreConfig, run, argv)


if __name__ == "__main__":
    main()
