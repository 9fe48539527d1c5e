"""The one TFRecord schema, shared by the shard writer and both readers; TensorFlow-free, and it
imports neither reader (components/data/reader.py chooses between them).

Images are stored encoded (as the manifest says) and decoded on read; pixels stay in [0, 255]
because the model carries its own preprocessing, so a served model takes raw pixels.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from components.contracts import Manifest

IMAGE_KEY = "image/encoded"
LABEL_KEY = "image/class/label"
SOURCE_KEY = "image/source"
MANIFEST_NAME = "manifest.json"  # its content: components/contracts/manifest.py


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def read_manifest(path: str | Path) -> Manifest:
    return Manifest.read(path)


# The geometric part of an augmentation policy: one affine warp (components/data/affine.py). The rest
# (JPEG, blur: components/data/degrade.py) always runs in the reader.
GEOMETRY = ("rotation_degrees", "shift_fraction", "horizontal_flip")


def geometry(policy: dict[str, Any]) -> dict[str, Any]:
    return {key: policy[key] for key in GEOMETRY}


def is_identity(policy: dict[str, Any]) -> bool:
    return not any(policy[key] for key in GEOMETRY)


def augment_seed(seed: int, process_index: int) -> int:
    """The seed of a reader's random augmentation draws (crops, warps, degradations). With several
    training processes each reads its own records with the same `seed`, so each must draw its own:
    else the k-th image of every process's share gets the same crop and warp. Process 0, and a
    single process, keep `seed`, so one-process training draws what it always drew."""
    return seed + 1_000_003 * process_index


def batch_count(count: int, batch_size: int, training: bool, replicas: int) -> int:
    """Batches per epoch, the same in both readers (components/data/reader.py says why training drops the rest)."""
    return count // batch_size if training and replicas > 1 else math.ceil(count / batch_size)


@functools.cache
def _example_class() -> type:
    """tf.train.Example from its schema in protobuf's descriptor pool (protobuf is a dependency
    anyway), a private pool so it never clashes with TensorFlow's own copy."""
    proto = descriptor_pb2.FileDescriptorProto(name="detector/example.proto", package="tensorflow", syntax="proto3")
    for name, field_type in (("BytesList", "TYPE_BYTES"), ("FloatList", "TYPE_FLOAT"), ("Int64List", "TYPE_INT64")):
        message = proto.message_type.add(name=name)
        message.field.add(
            name="value",
            number=1,
            label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
            type=getattr(descriptor_pb2.FieldDescriptorProto, field_type),
        )
    feature = proto.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, (name, kind) in enumerate((("bytes_list", "BytesList"), ("float_list", "FloatList"), ("int64_list", "Int64List")), start=1):
        feature.field.add(name=name, number=number, label=1, type=11, type_name=f".tensorflow.{kind}", oneof_index=0)
    features = proto.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, label=1, type=9)
    entry.field.add(name="value", number=2, label=1, type=11, type_name=".tensorflow.Feature")
    features.field.add(name="feature", number=1, label=3, type=11, type_name=".tensorflow.Features.FeatureEntry")
    example = proto.message_type.add(name="Example")
    example.field.add(name="features", number=1, label=1, type=11, type_name=".tensorflow.Features")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))


def serialize(encoded_image: bytes, label: int, source: str) -> bytes:
    """One tf.train.Example, byte-compatible with TensorFlow's (built without it)."""
    example = _example_class()()
    feature = example.features.feature
    feature[IMAGE_KEY].bytes_list.value.append(encoded_image)
    feature[LABEL_KEY].int64_list.value.append(int(label))
    feature[SOURCE_KEY].bytes_list.value.append(source.encode())
    # deterministic: a map's order otherwise varies between processes, and so would the shards' bytes
    # (two runs of one key must publish identical sets: tests/faults/test_shard_race.py).
    return example.SerializeToString(deterministic=True)


def decode_example(serialized: bytes) -> tuple[bytes, int]:
    example = _example_class().FromString(serialized)
    feature = example.features.feature
    return feature[IMAGE_KEY].bytes_list.value[0], int(feature[LABEL_KEY].int64_list.value[0])


def decode_source(serialized: bytes) -> str:
    """The record's source path, relative to the data root ('' in sets made without one)."""
    values = _example_class().FromString(serialized).features.feature[SOURCE_KEY].bytes_list.value
    return values[0].decode() if values else ""
