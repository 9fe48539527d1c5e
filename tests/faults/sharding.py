"""What the shard fault tests share: a validated tiny dataset, a shard config file, and the
published set reduced to what must not differ between runs."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from components.config import DataConfig
from components.data import validate
from components.data.schema import MANIFEST_NAME
from components.data.shard import ShardConfig

SEED = int(os.environ.get("FAULT_SEED", "20261127"))  # set FAULT_SEED to replay another kill point


def shard_config(data: DataConfig, work_dir: Path) -> ShardConfig:
    validated = validate.run(validate.ValidateConfig(data=data, work_dir=str(work_dir)))
    return ShardConfig(
        data=data, report_path=validated.report_path, dataset_fingerprint=validated.dataset_fingerprint, work_dir=str(work_dir), workers=1
    )


def config_file(cfg: ShardConfig, folder: Path) -> Path:
    path = folder / "shard.json"
    path.write_text(cfg.model_dump_json())
    return path


def published_state(manifest_path: str | Path) -> dict[str, object]:
    """Every published file's SHA-256, and the manifest without its creation time."""
    folder = Path(manifest_path).parent
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    manifest.pop("created")
    files = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir()) if path.name != MANIFEST_NAME}
    return {"manifest": manifest, "files": files}


def tree_digest(root: Path) -> dict[str, str]:
    """The sources' bytes and modes, to show a run left them as they were."""
    return {
        str(path.relative_to(root)): f"{oct(path.stat().st_mode)}:{hashlib.sha256(path.read_bytes()).hexdigest()}"
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }
