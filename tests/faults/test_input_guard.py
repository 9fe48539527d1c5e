"""One file never stops a run: the worker guard, and shard and predict behind it."""

from __future__ import annotations

import io
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from components.contracts import Manifest, ManifestEncoding
from components.data.guard import guarded

TINY = 32


def _work(job: tuple[str, int]) -> int:
    """Runs in a guarded worker: each kind imitates one way a decoder goes wrong."""
    kind, value = job
    if kind == "die":
        os.kill(os.getpid(), signal.SIGKILL)  # what the kernel's OOM killer does
    elif kind == "hang":
        time.sleep(600)  # a decoder stuck in a loop; the deadline must end it
    elif kind == "raise":
        raise RuntimeError("decoder bug")
    elif kind == "allocate":
        return len(bytearray(2**31))  # 2 GiB, far over the budget below
    return value * 2


def test_a_worker_that_dies_hangs_raises_or_overspends_fails_only_its_own_job():
    jobs = [("ok", 1), ("die", 0), ("ok", 2), ("hang", 0), ("ok", 3), ("raise", 0), ("allocate", 0), ("ok", 4)]
    with guarded(workers=2, timeout_seconds=3, memory_mb=256) as guard:
        outcomes = list(guard.map(_work, jobs))
    assert [outcome.value for outcome in outcomes] == [2, None, 4, None, 6, None, None, 8]
    errors = [outcome.error for outcome in outcomes]
    assert errors[1] == "worker died (killed by SIGKILL, e.g. by the kernel's OOM killer); the worker was replaced"
    assert errors[3] == "timed out: over the per-file budget of 3 s (data.decode_timeout_seconds)"
    assert errors[5] == "RuntimeError: decoder bug"
    assert errors[6] == "out of memory: over the per-file budget (data.decode_memory_mb)"


def _broken_exif_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (TINY, TINY)).save(buffer, format="PNG", exif=b"not a tiff block")
    return buffer.getvalue()


@pytest.mark.slow
def test_shard_skips_and_names_files_that_went_bad_after_validation(tiny_dataset: Path, tmp_path: Path):
    from components.config import DataConfig
    from components.data.shard import ShardConfig
    from components.data.shard import run as shard
    from components.data.validate import ValidateConfig
    from components.data.validate import run as validate

    root = Path(shutil.copytree(tiny_dataset, tmp_path / "data"))
    data = DataConfig(root=str(root), image_size=TINY, encoding="png", images_per_shard=8)
    validated = validate(ValidateConfig(data=data, work_dir=str(tmp_path / "work"), workers=2))
    test_files = sorted((root / "test" / "REAL").iterdir())
    test_files[0].write_bytes(_broken_exif_png())  # rewritten after validation called it ok
    outside = tmp_path / "outside.png"
    Image.new("RGB", (TINY, TINY)).save(outside)
    test_files[1].unlink()
    test_files[1].symlink_to(outside)  # swapped for a link after validation
    config = ShardConfig(
        data=data, report_path=validated.report_path, dataset_fingerprint=validated.dataset_fingerprint, work_dir=str(tmp_path / "work")
    )
    result = shard(config)
    entry = Manifest.read(result.manifest_path).splits["test"]
    skipped = entry.skipped
    assert set(skipped) == {f"test/REAL/{test_files[0].name}", f"test/REAL/{test_files[1].name}"}
    assert "SyntaxError: not a TIFF file" in skipped[f"test/REAL/{test_files[0].name}"]
    assert skipped[f"test/REAL/{test_files[1].name}"].startswith("symbolic link: refused")
    assert entry.count == validated.usable["test"]["FAKE"] + validated.usable["test"]["REAL"] - 2 == sum(entry.per_class.values())


def test_predict_scores_each_image_and_names_each_failure(tmp_path: Path):
    from components.serving.predict import PredictConfig, prepared_batches
    from components.serving.scoring import Detector

    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for index in range(3):
        Image.fromarray(rng.integers(0, 255, (TINY, TINY, 3), dtype=np.uint8)).save(folder / f"good{index}.png")
    (folder / "exif.png").write_bytes(_broken_exif_png())
    (folder / "page.jpg").write_bytes(b"<html>")
    os.mkfifo(folder / "pipe.png")
    # Only the fields predict reads from a model's manifest.
    manifest = Manifest.model_construct(image_size=TINY, encoding=ManifestEncoding(codec="png"), fit="resize")
    paths = sorted(folder.iterdir())
    detector = Detector(model=None, manifest=manifest, threshold=0.5, version="1")  # preparation only
    batches = list(prepared_batches(paths, detector, PredictConfig(images=str(folder), batch_size=2, workers=2)))
    kept = [path for paths, _, _ in batches for path in paths]
    failures = {path: reason for _, _, failed in batches for path, reason in failed.items()}
    assert kept == [str(folder / f"good{index}.png") for index in range(3)]
    assert sorted(failures) == [str(folder / name) for name in ("exif.png", "page.jpg", "pipe.png")]
    assert "SyntaxError" in failures[str(folder / "exif.png")] and failures[str(folder / "pipe.png")] == "not a regular file (a FIFO)"
    assert all(pixels.shape == (TINY, TINY, 3) for _, batch, _ in batches for pixels in batch)
    assert [len(paths) + len(failed) for paths, _, failed in batches] == [2, 2, 2], "a failure never drops its batch"
