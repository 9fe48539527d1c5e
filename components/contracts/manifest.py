"""The shard manifest (`manifest.json` beside the shards, written by components/data/shard.py).

`Manifest.write` writes the same JSON, key for key and in the same order, as the dict the shard
writer wrote before this model existed, so published sets (and their PUBLISHED.json sizes) stay
valid, and `Manifest.read` reads every manifest written since.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from components.config import Strict

MANIFEST_VERSION = 1


class ManifestSource(Strict):
    root: str
    validation_report: str


class ManifestEncoding(Strict):
    codec: Literal["jpeg", "png"]
    jpeg_quality: int | None = None  # None for PNG, and when drawn per image from jpeg_quality_range
    jpeg_quality_range: tuple[int, int] | None = None

    def as_written(self) -> dict[str, Any]:
        """The range only when there is one, so manifests written before it existed keep their bytes."""
        return self.model_dump(mode="json", exclude={"jpeg_quality_range"} if self.jpeg_quality_range is None else set())

    @property
    def serving_quality(self) -> int:
        """The one quality a served image is re-encoded at: the fixed one, or the middle of the range."""
        return self.jpeg_quality or (sum(self.jpeg_quality_range) // 2 if self.jpeg_quality_range else 95)


class SplitPolicy(Strict):
    seed: int
    val_fraction: float
    stratified: bool = True


class Augmentation(Strict):
    # A dict, not AugmentConfig: a manifest keeps the policy its shards were written with, and a
    # newer AugmentConfig field must not be filled in as if it had been.
    policy: dict[str, Any]
    applied: Literal["live", "premade"]
    premade_copies: int = 0
    splits: list[str] = ["train"]


class SplitEntry(Strict):
    files: list[str]
    count: int
    per_class: dict[str, int] = {}
    skipped: dict[str, str] = {}  # file (relative to the data root) -> why it is not in the shards


def p_generated(values, positive_class: str, generated_class: str):
    """P(positive_class), a float or an array, on the P(AI-generated) scale users read: the model
    outputs P(positive), which is the report's REAL unless the config makes the generated class positive."""
    return values if positive_class == generated_class else 1.0 - values


class Manifest(Strict):
    version: int = MANIFEST_VERSION
    shard_key: str
    dataset_fingerprint: str
    created: str
    source: ManifestSource
    class_names: list[str]
    labels: dict[str, int]
    positive_class: str
    generated_class: str
    image_size: int
    fit: Literal["resize", "crop", "pad"] = "resize"  # shards made before data.fit existed were resized
    encoding: ManifestEncoding
    split: SplitPolicy
    augmentation: Augmentation
    splits: dict[str, SplitEntry]

    @classmethod
    def read(cls, path: str | Path) -> Manifest:
        try:
            return cls.model_validate_json(Path(path).read_text())
        except ValidationError as error:
            raise ValueError(f"{path} is not a valid shard manifest: {error}") from None

    def write(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json") | {"encoding": self.encoding.as_written()}, indent=2)

    def p_generated(self, values):
        """P(positive_class) values, scores or a threshold on them, as P(AI-generated)."""
        return p_generated(values, self.positive_class, self.generated_class)

    def entry(self, split: str) -> SplitEntry:
        if split not in self.splits:
            raise ValueError(f"Unknown split. Expected one of {sorted(self.splits)}. Received: split={split!r}")
        return self.splits[split]

    def paths(self, split: str, folder: str | Path) -> list[str]:
        """The split's shard files, as paths under `folder` (the manifest's own folder)."""
        return [str(Path(folder) / name) for name in self.entry(split).files]

    @property
    def counts(self) -> dict[str, int]:
        return {split: entry.count for split, entry in self.splits.items()}
