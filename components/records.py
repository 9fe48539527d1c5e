"""The one TFRecord schema, shared by the shard writer and both readers; TensorFlow-free.

Images are stored encoded (as the manifest says) and decoded on read; pixels stay in [0, 255]
because the model carries its own preprocessing, so a served model takes raw pixels. Two readers
yield the same batches in evaluation order: tf.data (components/tfdata.py, the default where
TensorFlow is installed) and a TensorFlow-free one (components/shard_reader.py).

With several replicas (devices), every batch must split into equal non-empty parts: training
drops the last partial batch (the shuffle puts other images there next epoch), and evaluation
pads its last batch to a multiple of the replicas with copies weighted 0, so every example is
scored exactly once and the copies count for nothing.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

from components.contracts import Manifest

IMAGE_KEY = "image/encoded"
LABEL_KEY = "image/class/label"
SOURCE_KEY = "image/source"
MANIFEST_NAME = "manifest.json"  # its content: components/contracts/manifest.py
# Bounded, so memory stays flat however large the dataset grows.
SHUFFLE_BUFFER = 2048


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def serialize(encoded_image: bytes, label: int, source: str) -> bytes:
    """One tf.train.Example, byte-compatible with TensorFlow's (built without it)."""
    from components.shard_reader import encode_example

    return encode_example(encoded_image, label, source)


def read_manifest(path: str | Path) -> Manifest:
    return Manifest.read(path)


# The geometric part of an augmentation policy: one affine warp (components/affine.py). The rest
# (JPEG, blur: components/degrade.py) always runs in the reader.
GEOMETRY = ("rotation_degrees", "shift_fraction", "horizontal_flip")


def geometry(policy: dict[str, Any]) -> dict[str, Any]:
    return {key: policy[key] for key in GEOMETRY}


def is_identity(policy: dict[str, Any]) -> bool:
    return not any(policy[key] for key in GEOMETRY)


def batch_count(count: int, batch_size: int, training: bool, replicas: int) -> int:
    return count // batch_size if training and replicas > 1 else math.ceil(count / batch_size)


def installed_reader() -> str:
    """tf.data where TensorFlow is installed, else the TensorFlow-free reader (a JAX-only GPU host)."""
    return "tf.data" if importlib.util.find_spec("tensorflow") else "python"


def make_dataset(
    manifest_path: str | Path,
    split: str,
    batch_size: int,
    training: bool = False,
    seed: int = 42,
    dtype: Any = "float32",
    reader: str = "tf.data",
    augment: bool = True,
    replicas: int = 1,
):
    """Batches of (`dtype` pixels in [0, 255], float32 labels of shape [1]), plus per-example
    weights when `replicas` > 1 outside training (see the module's docstring).

    Training shuffles files and records and, when `augment`, applies the manifest's live
    augmentation in the reader (tf.data only; otherwise the model's RandomAffine layer does it).
    Pixels stay uint8 until the last step, a quarter of the bytes through batch and warp; training
    asks for uint8 out, and the model casts on its own device. `reader`: "tf.data" or "python".
    """
    manifest = read_manifest(manifest_path)
    manifest.entry(split)  # an unknown split fails here, naming it
    dtype = getattr(dtype, "name", dtype)
    folder = Path(manifest_path).parent
    if reader == "python":
        from components.shard_reader import ShardBatches

        return ShardBatches(manifest, folder, split, batch_size, training=training, seed=seed, dtype=dtype, replicas=replicas)
    if reader != "tf.data":
        raise ValueError(f"Unknown reader. Expected 'tf.data' or 'python'. Received: reader={reader!r}")
    from components import tfdata

    return tfdata.make_dataset(manifest, folder, split, batch_size, training, seed, dtype, augment, replicas)


def __getattr__(name: str) -> Any:
    """The tf.data parts, imported only when asked for, so this module stays TensorFlow-free."""
    if name in ("FEATURE_SPEC", "READ_SPEC", "fused_augment", "affine_transforms"):
        from components import tfdata

        return getattr(tfdata, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
