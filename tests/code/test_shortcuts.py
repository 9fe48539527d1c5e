"""The class profile validation writes: formats, sizes and JPEG qualities per class, and the
differences between the classes that a model could learn instead of the image."""

from __future__ import annotations

import pandas as pd

from components.data.shortcuts import buckets, differences, profile


def _report(fake: dict, real: dict, count: int = 10) -> pd.DataFrame:
    rows = []
    for name, facts in (("FAKE", fake), ("REAL", real)):
        for split in ("train", "test"):
            rows += [{"split": split, "class_name": name, "status": "ok", **facts} for _ in range(count)]
    rows.append(
        {"split": "train", "class_name": "REAL", "status": "quarantined", "format": "", "width": "", "height": "", "jpeg_quality": ""}
    )
    return pd.DataFrame(rows)


def test_classes_saved_alike_raise_no_difference():
    same = {"format": "JPEG", "width": 256, "height": 256, "jpeg_quality": 90}
    assert differences(buckets(_report(same, same))) == []


def test_png_fakes_against_jpeg_photos_of_other_sizes_are_named_per_split():
    found = differences(
        buckets(
            _report(
                {"format": "PNG", "width": 1024, "height": 1024, "jpeg_quality": ""},
                {"format": "JPEG", "width": 375, "height": 500, "jpeg_quality": 96},
            )
        )
    )
    assert len(found) == 6  # format, size and quality, in train and in test
    assert any(line.startswith("train: format differs") and "FAKE: PNG (100%)" in line and "REAL: JPEG (100%)" in line for line in found)
    assert any(line.startswith("test: jpeg_quality differs") and "FAKE: - (100%)" in line for line in found)


def test_the_profile_counts_each_bucket_per_class_and_skips_quarantined_files():
    table = profile(
        buckets(
            _report(
                {"format": "PNG", "width": 32, "height": 32, "jpeg_quality": ""},
                {"format": "JPEG", "width": 32, "height": 40, "jpeg_quality": 75},
            )
        )
    )
    train = table[table.split == "train"].set_index(["attribute", "value"])
    assert (train.loc[("format", "PNG"), "FAKE"], train.loc[("format", "JPEG"), "REAL"]) == (10, 10)
    assert train.loc[("jpeg_quality", "71-80"), "REAL"] == 10 and train.loc[("size", "≤64"), "REAL"] == 10
