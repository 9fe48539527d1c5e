"""The Ray engine against the local one, on a real local Ray cluster (two CPUs): the same report,
quarantine, manifest and shard bytes, one bad file costing one file, and resume per partition."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import pytest

from components.config import DataConfig
from components.data import engine, shard, validate

RAY_CPUS = 2


@pytest.fixture(scope="module")
def ray_cluster():
    """One cluster for the module, started as the stages start theirs; the stages find it running."""
    with engine.ray_cluster(RAY_CPUS) as cpus:
        yield cpus


def _huge_png(width: int, height: int) -> bytes:
    """A large all-zero RGBA PNG, a few hundred kB on disk and over a gigabyte to decode."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    compressor, row = zlib.compressobj(9), bytes(1 + 4 * width)
    body = b"".join([compressor.compress(row) for _ in range(height)] + [compressor.flush()])
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", body) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def dataset(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny demo data (its corrupt and duplicate files included), plus a file whose decode
    runs out of its worker's memory and a test image copied into train (a leak)."""
    root = tmp_path_factory.mktemp("engine") / "data"
    shutil.copytree(tiny_dataset, root)
    (root / "train" / "REAL" / "huge.png").write_bytes(_huge_png(9000, 9000))
    leaked = sorted((root / "test" / "FAKE").iterdir())[0]
    shutil.copyfile(leaked, root / "train" / "FAKE" / f"copy_{leaked.name}")
    return root


def _stages(data: DataConfig, work_dir: Path, engine_name: str) -> tuple[validate.ValidateResult, shard.ShardResult]:
    validated = validate.run(validate.ValidateConfig(data=data, work_dir=str(work_dir), engine=engine_name, workers=RAY_CPUS))
    sharded = shard.run(
        shard.ShardConfig(
            data=data,
            report_path=validated.report_path,
            dataset_fingerprint=validated.dataset_fingerprint,
            work_dir=str(work_dir),
            engine=engine_name,
            workers=RAY_CPUS,
        )
    )
    return validated, sharded


def _files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def _manifest(path: str) -> dict:
    """All but the two fields that name when and where: the creation time and the report's path."""
    manifest = json.loads(Path(path).read_text())
    manifest.pop("created")
    manifest["source"].pop("validation_report")
    return manifest


@pytest.mark.slow
def test_ray_engine_writes_the_local_engines_report_quarantine_manifest_and_shards(ray_cluster, dataset: Path, tmp_path: Path):
    data = DataConfig(root=str(dataset), image_size=32, encoding="png", images_per_shard=8)
    local_validated, local_sharded = _stages(data, tmp_path / "local", "local")
    ray_validated, ray_sharded = _stages(data, tmp_path / "ray", "ray")

    local_report, ray_report = Path(local_validated.report_path), Path(ray_validated.report_path)
    assert ray_report.read_bytes() == local_report.read_bytes()
    assert _files(Path(ray_validated.quarantine_dir)) == _files(Path(local_validated.quarantine_dir))
    assert not list(ray_report.parent.glob(validate.PROGRESS_GLOB)), "a finished run leaves no progress files"
    # One file over its worker's memory budget cost that file only, as did each corrupt one.
    report = validate.read_report(ray_report).set_index("path")
    assert "out of memory" in report.loc["train/REAL/huge.png", "reason"]
    assert ray_validated.statuses == local_validated.statuses
    assert ray_validated.statuses["quarantined"] >= 4 and ray_validated.statuses["leak"] >= 1

    assert ray_sharded.shard_key == local_sharded.shard_key
    assert _manifest(ray_sharded.manifest_path) == _manifest(local_sharded.manifest_path)
    ray_shards, local_shards = _files(Path(ray_sharded.manifest_path).parent), _files(Path(local_sharded.manifest_path).parent)
    for files in (ray_shards, local_shards):  # the manifests differ in the report's path only (compared above)
        files.pop("manifest.json")
        files["PUBLISHED.json"] = json.loads(files["PUBLISHED.json"])["files"]
        files["PUBLISHED.json"].pop("manifest.json")
    assert sum(name.endswith(".tfrecord") for name in ray_shards) > RAY_CPUS, "several shards, so several tasks wrote them"
    assert ray_shards == local_shards  # every shard's bytes, and their sizes as published


@pytest.mark.slow
def test_a_ray_run_cut_short_resumes_from_its_partitions_progress(ray_cluster, dataset: Path, tmp_path: Path):
    data = DataConfig(root=str(dataset), image_size=32, encoding="png")
    first = validate.run(validate.ValidateConfig(data=data, work_dir=str(tmp_path / "first"), engine="ray"))
    rows = validate.read_report(first.report_path).to_dict("records")
    # What two partitions of a killed run had finished, one of them with its last line cut short.
    out_dir = tmp_path / "second" / "validated" / Path(first.report_path).parent.name
    out_dir.mkdir(parents=True)
    finished = [{**row, "bytes": int(row["bytes"]), "mtime_ns": int(row["mtime_ns"])} for row in rows[:20]]
    (out_dir / "progress-dead0001-0.jsonl").write_text("".join(json.dumps(row) + "\n" for row in finished[:10]))
    (out_dir / "progress-dead0001-1.jsonl").write_text("".join(json.dumps(row) + "\n" for row in finished[10:]) + '{"split": "tr')

    second = validate.run(validate.ValidateConfig(data=data, work_dir=str(tmp_path / "second"), engine="ray"))
    assert second.inspected == len(rows) - len(finished)
    assert Path(second.report_path).read_bytes() == Path(first.report_path).read_bytes()
    assert not list(out_dir.glob(validate.PROGRESS_GLOB))


def test_partitions_cover_every_item_in_order_and_none_is_empty():
    items = list(range(37))
    for cpus in (1, 2, 16):
        parts = engine.partitions(items, cpus)
        assert [item for part in parts for item in part] == items
        assert all(parts) and len(parts) <= engine.PARTITIONS_PER_CPU * cpus
    assert engine.partitions([], 2) == []


def test_a_stage_leaving_the_cluster_leaves_it_running_for_the_others(ray_cluster):
    import ray

    with engine.ray_cluster(RAY_CPUS) as first, engine.ray_cluster(RAY_CPUS) as second:
        assert first == second == ray_cluster
    assert ray.is_initialized() and engine._users == 1, "the module's fixture still holds it"
