"""Both readers give each of several training processes its share of every global batch
(components/data/reader.py): the same number of batches in every process, and, in evaluation,
shares that put together are exactly the one-process batch, padding and weights included."""

from __future__ import annotations

import numpy as np
import pytest

from components.data.reader import make_dataset


def _batches(manifest_path: str, reader: str, split: str, training: bool, **share) -> list[list[np.ndarray]]:
    batches = make_dataset(manifest_path, split, 8, training=training, dtype="uint8", reader=reader, replicas=2, **share)
    return [[np.asarray(part) for part in batch] for batch in batches]


@pytest.mark.parametrize("reader", ["python", "tf.data"])
def test_evaluation_shares_of_two_processes_make_the_one_process_batches(manifest_path, reader):
    whole = _batches(manifest_path, reader, "val", False)
    shares = [_batches(manifest_path, reader, "val", False, processes=2, process_index=index) for index in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == len(whole)
    for batch, first, second in zip(whole, *shares):
        for part, *halves in zip(batch, first, second):
            np.testing.assert_array_equal(np.concatenate(halves), part)
    assert whole[-1][-1].min() == 0.0, "the 11 validation images end on a padded batch"


@pytest.mark.parametrize("reader", ["python", "tf.data"])
def test_training_shares_of_two_processes_take_the_same_steps(manifest_path, reader):
    whole = _batches(manifest_path, reader, "train", True)
    shares = [_batches(manifest_path, reader, "train", True, processes=2, process_index=index) for index in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == len(whole) == 40 // 8
    assert {len(labels) for share in shares for _, labels in share} == {4}
