"""Read and write the TFRecord shards without TensorFlow: for JAX-only GPU hosts and slim images.

- Framing: each record is a little-endian uint64 length, its masked CRC32C, the bytes, and
  their masked CRC32C. Both CRCs are checked; a mismatch names the file and the offset.
  Checksums come from `google-crc32c` (Google's C library, the `jax` extra); without it, a
  pure-Python table gives the same numbers, slowly.
- Records: tf.train.Example as the schema (components/data/schema.py) builds it, without TensorFlow.
- Batches: a keras.utils.PyDataset, so model.fit runs it with Keras' own workers and bounded
  queue. They are threads: Pillow releases the GIL while it decodes, so decoding scales over
  the cores and the decoded pixels never cross a pipe (the wall a process pool hits, issue 9).
"""

from __future__ import annotations

import collections
import functools
import io
import os
import struct
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np
from PIL import Image

from components.contracts import Manifest
from components.data import degrade
from components.data.schema import augment_seed, batch_count, decode_example, decode_source

_MASK_DELTA = 0xA282EAD8


@functools.cache
def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


def crc32c(data: bytes) -> int:
    try:
        import google_crc32c
    except ImportError:
        crc, table = 0xFFFFFFFF, _crc_table()
        for byte in data:
            crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
        return crc ^ 0xFFFFFFFF
    return google_crc32c.value(data)


def masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(record: bytes) -> bytes:
    length = struct.pack("<Q", len(record))
    return length + struct.pack("<I", masked_crc(length)) + record + struct.pack("<I", masked_crc(record))


def write_records(path: str | Path, records: Iterable[bytes]) -> None:
    with open(path, "wb") as out:
        for record in records:
            out.write(frame(record))


def record_spans(path: str | Path) -> list[tuple[int, int]]:
    """(offset, length) of every record's bytes, each header's CRC checked."""
    spans, size = [], os.path.getsize(path)
    with open(path, "rb") as shard:
        offset = 0
        while offset < size:
            header = shard.read(12)
            if len(header) < 12 or struct.unpack("<I", header[8:])[0] != masked_crc(header[:8]):
                raise ValueError(f"Corrupt TFRecord header in {path} at byte {offset}")
            length = struct.unpack("<Q", header[:8])[0]
            spans.append((offset + 12, length))
            offset += 12 + length + 4
            shard.seek(offset)
    return spans


def read_record(shard: io.BufferedReader, path: str, offset: int, length: int) -> bytes:
    shard.seek(offset)
    data = shard.read(length + 4)
    if len(data) < length + 4 or struct.unpack("<I", data[length:])[0] != masked_crc(data[:length]):
        raise ValueError(f"Corrupt TFRecord data in {path} at byte {offset - 12} (CRC mismatch)")
    return data[:length]


def decode_image(encoded: bytes, size: int, crop: np.random.Generator | None = None) -> np.ndarray:
    """`crop`: take a random size×size window, for the training shards of `fit: crop` (components/data/fit.py)."""
    with Image.open(io.BytesIO(encoded)) as image:
        pixels = np.asarray(image.convert("RGB"))
    if crop is not None and pixels.shape[0] >= size and pixels.shape[1] >= size:
        top, left = crop.integers(0, pixels.shape[0] - size + 1), crop.integers(0, pixels.shape[1] - size + 1)
        pixels = pixels[top : top + size, left : left + size]
    if pixels.shape != (size, size, 3):
        raise ValueError(f"Shard image has shape {pixels.shape}; the manifest says image_size={size}")
    return pixels


def read_sources(paths: list[str]) -> list[str]:
    """Every record's source path, file by file (evaluation order): for people and slices, never for training."""
    sources = []
    for path in paths:
        with open(path, "rb") as shard:
            for offset, length in record_spans(path):
                sources.append(decode_source(read_record(shard, str(path), offset, length)))
    return sources


class ShardBatches(keras.utils.PyDataset):
    """reader.make_dataset's TensorFlow-free reader: the same batches as tf.data in evaluation
    order; in training a fresh permutation of all records every epoch (indexes only: memory stays
    flat). Live augmentation is left to the model's RandomAffine layer.

    With several `processes`, each yields its equal slice of every global batch, sharded by
    record, not by file: every process counts the same batches without repeating any, whatever
    the number of shard files, and together they read the records of one process's batches."""

    def __init__(
        self,
        manifest: Manifest,
        folder: Path,
        split: str,
        batch_size: int,
        training: bool = False,
        seed: int = 42,
        dtype: str = "float32",
        replicas: int = 1,
        workers: int | None = None,
        processes: int = 1,
        process_index: int = 0,
    ) -> None:
        super().__init__(workers=workers or min(os.cpu_count() or 1, 16), use_multiprocessing=False, max_queue_size=8)
        self.size, self.batch_size, self.training, self.seed, self.dtype, self.replicas = (
            manifest.image_size,
            batch_size,
            training,
            seed,
            dtype,
            replicas,
        )
        self.processes, self.process_index = processes, process_index
        self.random_crop = training and manifest.fit == "crop"
        self.policy = manifest.augmentation.policy
        self.spans = [(path, *span) for path in manifest.paths(split, folder) for span in record_spans(Path(path))]
        self.order, self.epoch = np.arange(len(self.spans)), 0
        self._shuffle()

    def _shuffle(self) -> None:
        if self.training:
            self.order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.spans))

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._shuffle()

    def __len__(self) -> int:
        return batch_count(len(self.spans), self.batch_size, self.training, self.replicas)

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        positions = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        weights = None
        if self.replicas > 1 and not self.training:
            extra = (-len(positions)) % self.replicas  # copies of the first example, weighted 0
            weights = np.concatenate([np.ones(len(positions), "float32"), np.zeros(extra, "float32")])
            positions = np.concatenate([positions, positions[:1].repeat(extra)])
        # Several processes: this one's slice of the global batch, so together they feed exactly the
        # records one process would, and each decodes only its own (with its own augmentation draws).
        share = len(positions) // self.processes
        mine = slice(self.process_index * share, (self.process_index + 1) * share)
        batch = self._decoded([self.spans[position] for position in positions[mine]], index)
        return batch if weights is None else (*batch, weights[mine])

    def _decoded(self, chosen: list[tuple[str, int, int]], index: int) -> tuple[np.ndarray, np.ndarray]:
        images, labels = [], []
        seed = augment_seed(self.seed, self.process_index)
        rng = np.random.default_rng([seed, self.epoch, index])  # per batch: threads may decode batches in any order
        for path, offset, length in chosen:
            with open(path, "rb") as shard:
                encoded, label = decode_example(read_record(shard, path, offset, length))
            images.append(decode_image(encoded, self.size, rng if self.random_crop else None))
            labels.append(label)
        pixels = np.stack(images)
        if self.training and degrade.is_active(self.policy):
            pixels = degrade.degrade_batch(pixels, self.policy, np.array([seed + 7, self.epoch, index]))
        return pixels.astype(self.dtype), np.asarray(labels, "float32").reshape(-1, 1)

    def __iter__(self) -> Iterator[tuple[np.ndarray, ...]]:
        """In order, with the next batches decoding ahead on worker threads (at most two per worker)."""
        with ThreadPoolExecutor(self.workers) as pool:
            ahead: collections.deque = collections.deque()
            following = 0
            while following < len(self) or ahead:
                while following < len(self) and len(ahead) < 2 * self.workers:
                    ahead.append(pool.submit(self.__getitem__, following))
                    following += 1
                yield ahead.popleft().result()
