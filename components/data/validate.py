"""Validate a dataset folder, and any held-out test sets beside it, before anything trains on it.

Every file is fully decoded (a header check misses truncation). What cannot be used is copied,
with its reason, into a quarantine folder; the source is never modified or deleted. Exact
duplicates and images present in both train and test, or in train and a held-out set
(leakage), are flagged and kept out of training. The report has one row per file, its path
`<split>/<class>/<file>` relative to the split's folder (`data.root/<split>`, or a held-out
set's own folder for split `heldout-<name>`), and the fingerprint names the usable content.

No single file can stop the run: whatever reading or decoding one file raises, and a worker that
dies or runs over the per-file time or memory budget, becomes that file's quarantine reason.
Symbolic links are refused, never followed. Each finished file is appended to a progress file
(one per partition under the Ray engine, components/data/engine.py), so a rerun after a crash
continues where it stopped, and the report is replaced atomically. Duplicates and leakage are
judged once, over every file's hash, after all files are inspected, on either engine.
"""

from __future__ import annotations

import json
import os
import uuid
import warnings
from collections import defaultdict
from pathlib import Path

import pandas as pd
import PIL

from components.cli_support import component_main
from components.config import DataConfig, fingerprint
from components.contracts import ValidateConfig, ValidateResult
from components.data import engine
from components.data.guard import guarded
from components.data.images import (
    CONVERTIBLE_MODES,
    UnusableImage,
    copy_regular_file,
    file_row,
    inspect_file,
    list_entries,
    quarantined_row,
)
from components.data.s3data import missing_after_sync
from components.data.shortcuts import ClassShortcut, buckets, differences, profile

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
    "jpeg_quality",
    "normalised",
    "sha256",
    "mtime_ns",
    "checked_with",
]
PROGRESS_NAME = "progress.jsonl"
PROGRESS_GLOB = "progress*.jsonl"  # the local engine's file and the Ray partitions' (progress-<run>-<n>.jsonl)
# Bump when a rule that decides a file's status changes, or a row gains a column, so cached rows are checked again.
VERDICT_VERSION = 3
RETRIED_REASONS = ("worker died", "timed out")


class DatasetError(ValueError):
    """The dataset cannot be trained on as it stands; the message says what to fix."""


def run(cfg: ValidateConfig) -> ValidateResult:
    root = Path(cfg.data.root)
    key = [str(root.resolve())]
    if cfg.data.test_sets:  # only then, so a dataset validated without them keeps its folder
        key.append(sorted((name, str(Path(location).resolve())) for name, location in cfg.data.test_sets.items()))
    out_dir = Path(cfg.work_dir) / "validated" / f"{root.name}-{fingerprint(*key)}"
    report_path = out_dir / "report.csv"
    folders = split_folders(cfg.data)
    files = list(_walk(folders, cfg.data))
    out_dir.mkdir(parents=True, exist_ok=True)
    checked_with = verdict_settings(cfg.data)
    # Rows of the last report, then of a run that died before writing its report.
    previous = _previous_rows(report_path, checked_with)
    for progress_path in sorted(out_dir.glob(PROGRESS_GLOB)):
        previous |= _progress_rows(progress_path, checked_with)
    rows, fresh = [], []
    for split, name, path, relative in files:
        row = previous.get((split, name, *_file_key(path, relative)))
        if row:
            rows.append(row)
        else:
            fresh.append((split, name, path, relative))
    rows += _inspect_all(fresh, cfg, out_dir, checked_with)
    test_splits = {cfg.data.test_dir, *cfg.data.held_out}
    report = pd.DataFrame(_flag_duplicates_and_leaks(rows, test_splits), columns=REPORT_COLUMNS, dtype=object)
    quarantine_dir = out_dir / "quarantine"
    _quarantine(folders, report[report.status == "quarantined"], quarantine_dir)
    _write_atomically(report, report_path)
    for progress_path in out_dir.glob(PROGRESS_GLOB):
        progress_path.unlink(missing_ok=True)
    usable = _usable_counts(report, cfg.data)
    classes = buckets(report)
    profile(classes).to_csv(out_dir / "class_profile.csv", index=False)
    shortcuts = differences(classes)
    for line in shortcuts:
        warnings.warn(ClassShortcut(line), stacklevel=2)
    ok = report[report.status == "ok"].sort_values(["split", "class_name", "sha256"])
    return ValidateResult(
        report_path=str(report_path),
        quarantine_dir=str(quarantine_dir),
        dataset_fingerprint=fingerprint(ok[["split", "class_name", "sha256"]].values.tolist()),
        usable=usable,
        statuses={str(key): int(value) for key, value in report.status.value_counts().items()},
        inspected=len(fresh),
        class_differences=shortcuts,
    )


def read_report(path: str | Path) -> pd.DataFrame:
    """A name that is not UTF-8 is written as its raw bytes, so the row names the file exactly."""
    # object, not pandas' Arrow strings, which cannot hold such a name.
    return pd.read_csv(path, keep_default_na=False, encoding_errors="surrogateescape", dtype={"path": object, "reason": object})


def split_folders(data: DataConfig) -> dict[str, Path]:
    """The folder each split's `{class}/` folders are in: train and test under data.root, each
    held-out set where data.test_sets puts it."""
    root = Path(data.root)
    return {data.train_dir: root / data.train_dir, data.test_dir: root / data.test_dir} | {
        split: Path(location) for split, location in data.held_out.items()
    }


def source_path(folders: dict[str, Path], relative: str) -> Path:
    """A report row's file: its path is `<split>/<path inside the split's folder>`."""
    split, _, inside = relative.partition("/")
    return folders[split] / inside


def verdict_settings(data: DataConfig) -> str:
    """Everything that can change one file's verdict; a cached row checked with other settings is
    checked again. Pillow's version is in it because a new decoder can accept or refuse a file."""
    budgets = [data.max_image_pixels, data.decode_timeout_seconds, data.decode_memory_mb]
    return fingerprint(VERDICT_VERSION, PIL.__version__, sorted(CONVERTIBLE_MODES), budgets)


def _walk(folders: dict[str, Path], data: DataConfig):
    for given in (Path(data.root), *map(Path, data.test_sets.values())):
        if not given.is_dir():
            raise DatasetError(f"Not a folder: {str(given)!r} (data.root, or a data.test_sets entry)")
        if missing := missing_after_sync(given):
            named = "; ".join(f"{path}: {why}" for path, why in sorted(missing.items())[:5])
            more = f"; and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise DatasetError(f"{len(missing)} file(s) in the bucket did not arrive in the last S3 sync, so sync again: {named}{more}")
    for split, split_folder in folders.items():
        for name in data.class_names:
            folder = split_folder / name
            if not folder.is_dir():
                raise DatasetError(f"Missing class folder {folder}: expected {split_folder}/{{{','.join(data.class_names)}}}")
            for link in (split_folder, folder):
                if link.is_symlink():
                    raise DatasetError(f"{link} is a symbolic link; refused, so that nothing outside the folders named is read")
            for path in list_entries(folder):
                yield split, name, path, f"{split}/{path.relative_to(split_folder)}"


def _file_key(path: Path, relative: str) -> tuple[str, int, int]:
    """lstat, not stat: a link is judged as the link, and a file gone since listing misses the cache."""
    try:
        info = os.lstat(path)
    except OSError:
        return relative, -1, -1
    return relative, info.st_size, info.st_mtime_ns


def _row_key(row: dict) -> tuple[str, str, str, int, int]:
    return row["split"], row["class_name"], row["path"], int(row["bytes"]), int(row["mtime_ns"])


def _reusable(row: dict, checked_with: str) -> bool:
    # A death or a missed deadline may be the machine's (the OOM killer, a loaded host): try again.
    return row.get("checked_with") == checked_with and not str(row["reason"]).startswith(RETRIED_REASONS)


def _previous_rows(report_path: Path, checked_with: str) -> dict[tuple, dict]:
    """Rows of the last report that still hold. A report that cannot be read is only a cache."""
    try:
        previous = read_report(report_path)[REPORT_COLUMNS].to_dict("records")
        return {_row_key(row): row for row in previous if _reusable(row, checked_with)}
    except (OSError, ValueError, KeyError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return {}


def _progress_rows(progress_path: Path, checked_with: str) -> dict[tuple, dict]:
    """Rows a killed run had finished; a line cut short by the kill is skipped."""
    rows = {}
    try:
        lines = progress_path.read_text().splitlines()
    except OSError:
        return {}
    for line in lines:
        try:
            row = json.loads(line)
            if _reusable(row, checked_with):
                rows[_row_key(row)] = row
        except (ValueError, KeyError, TypeError):
            continue
    return rows


def _inspect_all(files: list[tuple[str, str, Path, str]], cfg: ValidateConfig, out_dir: Path, checked_with: str) -> list[dict]:
    if not files:
        return []
    data = cfg.data
    jobs = [(split, name, str(path), relative, data.max_image_pixels) for split, name, path, relative in files]
    budgets = (data.decode_timeout_seconds, data.decode_memory_mb)
    if cfg.engine == "local":
        workers = min(cfg.workers or os.cpu_count() or 1, len(jobs))
        return _inspect(jobs, workers, *budgets, str(out_dir / PROGRESS_NAME), checked_with)
    run_token = uuid.uuid4().hex[:8]
    with engine.ray_cluster(cfg.workers) as cpus:
        parts = enumerate(engine.partitions(jobs, cpus))
        arguments = [(part, *budgets, str(out_dir / f"progress-{run_token}-{index}.jsonl"), checked_with) for index, part in parts]
        return [row for rows in engine.map_partitions(inspect_partition, arguments) for row in rows]


def inspect_partition(
    jobs: list[tuple[str, str, str, str, int]], timeout_seconds: float, memory_mb: int, progress_path: str, checked_with: str
) -> list[dict]:
    """A Ray task: one row per job, in job order. A job already in this partition's progress file
    is not inspected again, so a task Ray retried after its worker died goes on from there."""
    done = _progress_rows(Path(progress_path), checked_with)
    keys = [(split, name, *_file_key(Path(path), relative)) for split, name, path, relative, _ in jobs]
    remaining = [job for job, key in zip(jobs, keys) if key not in done]
    fresh = iter(_inspect(remaining, 1, timeout_seconds, memory_mb, progress_path, checked_with))
    return [done[key] if key in done else next(fresh) for key in keys]


def _inspect(
    jobs: list[tuple[str, str, str, str, int]], workers: int, timeout_seconds: float, memory_mb: int, progress_path: str, checked_with: str
) -> list[dict]:
    """One row per job, in job order, each appended to `progress_path` as it finishes."""
    rows = []
    with guarded(workers, timeout_seconds, memory_mb) as guard, open(progress_path, "a+") as progress:
        _end_cut_line(progress)
        for job, outcome in zip(jobs, guard.map(inspect_file, jobs)):
            row = outcome.value if outcome.error is None else _failed_row(job, outcome.error)
            row["checked_with"] = checked_with
            # One line per file as it finishes: a rerun after a crash starts where this one stopped.
            progress.write(json.dumps(row) + "\n")
            progress.flush()
            rows.append(row)
    return rows


def _end_cut_line(progress) -> None:
    """A kill can cut the last line short; end it, so that it alone is lost, not the next row too."""
    if progress.tell() > 0:
        progress.seek(progress.tell() - 1)
        if progress.read(1) != "\n":
            progress.write("\n")


def _failed_row(job: tuple[str, str, str, str, int], reason: str) -> dict:
    split, name, path, relative, _ = job
    return quarantined_row(file_row(split, name, path, relative), reason)


def _flag_duplicates_and_leaks(rows: list[dict], test_splits: set[str]) -> list[dict]:
    """Test rows (the test split and the held-out sets) come first, so a leaked copy is dropped
    from train and every test set stays whole."""
    rows = sorted(rows, key=lambda row: (row["split"] not in test_splits, row["split"], row["class_name"], row["path"]))
    for row in rows:
        if row["status"] != "quarantined":
            row["status"], row["reason"] = "ok", ""
    usable = [row for row in rows if row["status"] == "ok"]
    test_hashes = {row["sha256"] for row in usable if row["split"] in test_splits}
    classes = defaultdict(set)
    for row in usable:
        classes[(row["split"], row["sha256"])].add(row["class_name"])
    first_seen: dict[tuple[str, str], str] = {}
    for row in usable:
        key = (row["split"], row["sha256"])
        if row["split"] not in test_splits and row["sha256"] in test_hashes:
            row["status"], row["reason"] = "leak", "same bytes as a test image; kept out of training"
        elif len(classes[key]) > 1:
            row["status"], row["reason"] = "conflict", "same bytes under both classes"
        elif key in first_seen:
            row["status"], row["reason"] = "duplicate", f"duplicate of {first_seen[key]}"
        else:
            first_seen[key] = row["path"]
    return rows


def _quarantine(folders: dict[str, Path], rows: pd.DataFrame, quarantine_dir: Path) -> None:
    for row in rows.itertuples():
        target = quarantine_dir / row.path
        target.parent.mkdir(parents=True, exist_ok=True)
        reason = row.reason
        try:
            copy_regular_file(source_path(folders, row.path), target)
        except (OSError, UnusableImage) as error:
            reason += f"\n(the file itself was not copied: {error})"
        # Reasons may quote bytes from the file or its name; they must never stop the run.
        target.with_name(target.name + ".reason.txt").write_text(f"{reason}\n", errors="backslashreplace")


def _write_atomically(report: pd.DataFrame, report_path: Path) -> None:
    """Written beside, flushed to disk, then renamed: a crash leaves the old report or the new one."""
    staging = report_path.with_name(f".{report_path.name}.{os.getpid()}.tmp")
    with open(staging, "w", encoding="utf-8", errors="surrogateescape", newline="") as handle:
        report.to_csv(handle, index=False)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(staging, report_path)


def _usable_counts(report: pd.DataFrame, data: DataConfig) -> dict[str, dict[str, int]]:
    counts = report[report.status == "ok"].groupby(["split", "class_name"]).size()
    splits = (data.train_dir, data.test_dir, *data.held_out)
    usable = {split: {name: int(counts.get((split, name), 0)) for name in data.class_names} for split in splits}
    empty = [f"{split}/{name}" for split, per_class in usable.items() for name, count in per_class.items() if count == 0]
    if empty:
        raise DatasetError(f"No usable images left in {', '.join(empty)}; see the report for reasons.")
    return usable


def main(argv: list[str] | None = None) -> None:
    component_main("detector validate", __doc__, ValidateConfig, run, argv)


if __name__ == "__main__":
    main()
