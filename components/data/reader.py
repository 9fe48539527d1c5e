"""The choice between the two shard readers, which yield the same batches in evaluation order:
tf.data (components/data/tfdata.py, the default where TensorFlow is installed) and a
TensorFlow-free one (components/data/shard_reader.py, for JAX-only GPU hosts). Both read the one
schema (components/data/schema.py); this module is the only one that imports both.

With several replicas (devices), every batch must split into equal non-empty parts: training
drops the last partial batch (the shuffle puts other images there next epoch), and evaluation
pads its last batch to a multiple of the replicas with copies weighted 0, so every example is
scored exactly once and the copies count for nothing.

With several training processes (components/training/multihost.py), `batch_size` is still the
global batch, and each process gets its equal share of every one of them, with the same number
of batches per epoch in every process: a process that ran out first would leave the others
waiting in a collective for ever. The TensorFlow-free reader shards by record, tf.data by file
(each reader's docstring says why)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from components.data.schema import read_manifest


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
    processes: int = 1,
    process_index: int = 0,
):
    """Batches of (`dtype` pixels in [0, 255], float32 labels of shape [1]), plus per-example
    weights when `replicas` > 1 outside training (the module's docstring says why).

    Training shuffles files and records and, when `augment`, applies the manifest's live
    augmentation in the reader (tf.data only; otherwise the model's RandomAffine layer does it).
    Pixels stay uint8 until the last step, a quarter of the bytes through batch and warp; training
    asks for uint8 out, and the model casts on its own device. `reader`: "tf.data" or "python".
    `processes`, `process_index`: this process's share of each batch (the module's docstring).
    """
    manifest = read_manifest(manifest_path)
    manifest.entry(split)  # an unknown split fails here, naming it
    dtype = getattr(dtype, "name", dtype)
    folder = Path(manifest_path).parent
    if reader == "python":
        from components.data.shard_reader import ShardBatches

        return ShardBatches(
            manifest,
            folder,
            split,
            batch_size,
            training=training,
            seed=seed,
            dtype=dtype,
            replicas=replicas,
            processes=processes,
            process_index=process_index,
        )
    if reader != "tf.data":
        raise ValueError(f"Unknown reader. Expected 'tf.data' or 'python'. Received: reader={reader!r}")
    from components.data import tfdata

    share = tfdata.ProcessShare(processes, process_index)
    return tfdata.make_dataset(manifest, folder, split, batch_size, training, seed, dtype, augment, replicas, share)
