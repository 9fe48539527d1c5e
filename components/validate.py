"""Validate a dataset folder before anything trains on it.

Every file is fully decoded (a header check misses truncation). What cannot be used is copied,
with its reason, into a quarantine folder; the source is never modified or deleted. Exact
duplicates and images present in both train and test (leakage) are flagged and kept out of
training. The report has one row per file, and the fingerprint names the usable content.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pandas as pd

from components.cli_support import component_main
from components.config import DataConfig, Strict, fingerprint
from components.images import UnusableImage, load_rgb

REPORT_COLUMNS = [
    "split",
    "class_name",
    "path",
    "status",
    "reason",
    "bytes",
    "format",
    "mode",
    "width",
    "height",
    "normalised",
    "sha256",
    "mtime_ns",
]


class DatasetError(ValueError):
    """The dataset cannot be trained on as it stands; the message says what to fix."""


class ValidateConfig(Strict):
    data: DataConfig = DataConfig()
    work_dir: str = "work"
    workers: int = 0  # 0 means one per core


class ValidateResult(Strict):
    report_path: str
    quarantine_dir: str
    dataset_fingerprint: str
    usable: dict[str, dict[str, int]]
    statuses: dict[str, int]


def run(cfg: ValidateConfig) -> ValidateResult:
    root = Path(cfg.data.root)
    out_dir = Path(cfg.work_dir) / "validated" / f"{root.name}-{fingerprint(str(root.resolve()))}"
    report_path = out_dir / "report.csv"
    previous = _previous_rows(report_path)
    files = list(_walk(root, cfg.data))
    fresh = [(split, name, path) for split, name, path in files if _cache_key(root, path) not in previous]
    rows = {(row["split"], row["class_name"], row["path"]): row for row in previous.values()}
    rows = {key: rows[key] for key in rows if (root / key[2]).is_file()}
    for row in _inspect_all(root, fresh, cfg.data.max_image_pixels, cfg.workers or os.cpu_count() or 1):
        rows[(row["split"], row["class_name"], row["path"])] = row
    report = pd.DataFrame(_flag_duplicates_and_leaks(list(rows.values()), cfg.data.test_dir), columns=REPORT_COLUMNS)
    quarantine_dir = out_dir / "quarantine"
    _quarantine(root, report[report.status == "quarantined"], quarantine_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report.to_csv(report_path, index=False)
    usable = _usable_counts(report, cfg.data)
    ok = report[report.status == "ok"].sort_values(["split", "class_name", "sha256"])
    return ValidateResult(
        report_path=str(report_path),
        quarantine_dir=str(quarantine_dir),
        dataset_fingerprint=fingerprint(ok[["split", "class_name", "sha256"]].values.tolist()),
        usable=usable,
        statuses={str(key): int(value) for key, value in report.status.value_counts().items()},
    )


def _walk(root: Path, data: DataConfig):
    if not root.is_dir():
        raise DatasetError(f"Data root is not a folder. Received: data.root={str(root)!r}")
    for split in (data.train_dir, data.test_dir):
        for name in data.class_names:
            folder = root / split / name
            if not folder.is_dir():
                raise DatasetError(
                    f"Missing class folder {folder}: expected <root>/{{{data.train_dir},{data.test_dir}}}/{{{','.join(data.class_names)}}}"
                )
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    yield split, name, path


def _cache_key(root: Path, path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.relative_to(root)), stat.st_size, stat.st_mtime_ns


def _previous_rows(report_path: Path) -> dict[tuple[str, int, int], dict]:
    """Rows of the last report, keyed so that an unchanged file is not decoded again."""
    if not report_path.is_file():
        return {}
    previous = pd.read_csv(report_path, keep_default_na=False)
    return {(row["path"], int(row["bytes"]), int(row["mtime_ns"])): row for row in previous.to_dict("records")}


def _inspect_all(root: Path, files: list[tuple[str, str, Path]], max_pixels: int, workers: int) -> list[dict]:
    if not files:
        return []
    jobs = [(split, name, str(path), str(path.relative_to(root)), max_pixels) for split, name, path in files]
    if workers == 1 or len(jobs) < 64:
        return [_inspect(job) for job in jobs]
    # spawn, not fork: the caller may already hold TensorFlow's threads, which fork would corrupt.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        return list(pool.map(_inspect, jobs, chunksize=64))


def _inspect(job: tuple[str, str, str, str, int]) -> dict:
    split, name, path, relative, max_pixels = job
    stat = os.stat(path)
    row = {"split": split, "class_name": name, "path": relative, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    try:
        _, facts = load_rgb(Path(path), max_pixels)
    except UnusableImage as error:
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        return {
            **row,
            "status": "quarantined",
            "reason": str(error),
            "sha256": digest,
            "format": "",
            "mode": "",
            "width": 0,
            "height": 0,
            "normalised": "",
        }
    return {
        **row,
        "status": "ok",
        "reason": "",
        "sha256": facts.sha256,
        "format": facts.format,
        "mode": facts.mode,
        "width": facts.width,
        "height": facts.height,
        "normalised": facts.normalised,
    }


def _flag_duplicates_and_leaks(rows: list[dict], test_dir: str) -> list[dict]:
    """Test rows come first, so a leaked copy is dropped from train and the test set stays whole."""
    rows = sorted(rows, key=lambda row: (row["split"] != test_dir, row["split"], row["class_name"], row["path"]))
    for row in rows:
        if row["status"] != "quarantined":
            row["status"], row["reason"] = "ok", ""
    usable = [row for row in rows if row["status"] == "ok"]
    test_hashes = {row["sha256"] for row in usable if row["split"] == test_dir}
    classes = defaultdict(set)
    for row in usable:
        classes[(row["split"], row["sha256"])].add(row["class_name"])
    first_seen: dict[tuple[str, str], str] = {}
    for row in usable:
        key = (row["split"], row["sha256"])
        if row["split"] != test_dir and row["sha256"] in test_hashes:
            row["status"], row["reason"] = "leak", "same bytes as a test image; kept out of training"
        elif len(classes[key]) > 1:
            row["status"], row["reason"] = "conflict", "same bytes under both classes"
        elif key in first_seen:
            row["status"], row["reason"] = "duplicate", f"duplicate of {first_seen[key]}"
        else:
            first_seen[key] = row["path"]
    return rows


def _quarantine(root: Path, rows: pd.DataFrame, quarantine_dir: Path) -> None:
    for row in rows.itertuples():
        target = quarantine_dir / row.path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / row.path, target)
        target.with_name(target.name + ".reason.txt").write_text(f"{row.reason}\n")


def _usable_counts(report: pd.DataFrame, data: DataConfig) -> dict[str, dict[str, int]]:
    counts = report[report.status == "ok"].groupby(["split", "class_name"]).size()
    usable = {split: {name: int(counts.get((split, name), 0)) for name in data.class_names} for split in (data.train_dir, data.test_dir)}
    empty = [f"{split}/{name}" for split, per_class in usable.items() for name, count in per_class.items() if count == 0]
    if empty:
        raise DatasetError(f"No usable images left in {', '.join(empty)}; see the report for reasons.")
    return usable


def main(argv: list[str] | None = None) -> None:
    component_main("detector validate", __doc__, ValidateConfig, run, argv)


if __name__ == "__main__":
    main()
