"""What could tell the classes apart besides the image: each class's file formats, sizes and JPEG
qualities before re-encoding.

Grommelt et al. ("Fake or JPEG?", 2024) found GenImage's photos JPEG and its fakes PNG, at other
sizes: a detector trained there learns the format and the size, and fails on the first fake
saved as JPEG. Shards re-encode both classes alike, which removes the format itself but not what
an earlier JPEG pass or resize left in the pixels, so validation reports a difference; it cannot
undo one. Crops (data.fit=crop) avoid adding a resize, and a JPEG quality drawn per image
(data.jpeg_quality_range) gives both classes the same last compression.
"""

from __future__ import annotations

import pandas as pd

ATTRIBUTES = ("format", "size", "jpeg_quality")
# Between two classes' distributions of one attribute (total variation distance, 0 to 1): above
# this share of images would have to change bucket to make them equal, and that is flagged.
WARN_DISTANCE = 0.2
SIZE_EDGES, SIZE_LABELS = (0, 64, 128, 256, 512, 1024, float("inf")), ("≤64", "≤128", "≤256", "≤512", "≤1024", ">1024")
QUALITY_EDGES, QUALITY_LABELS = (0, 70, 80, 90, 95, 100), ("≤70", "71-80", "81-90", "91-95", "96-100")


class ClassShortcut(UserWarning):
    """A difference between the classes other than the image. A warning, not an error: the data
    may still be what the user has, and the test suite's synthetic data has such differences."""


def buckets(report: pd.DataFrame) -> pd.DataFrame:
    """Usable rows' split, class and the bucket of each attribute: format; shorter side in px;
    JPEG quality (estimated from the file's tables, "-" when not JPEG)."""
    ok = report[report.status == "ok"]
    shorter = pd.to_numeric(ok.width).combine(pd.to_numeric(ok.height), min)
    quality = pd.to_numeric(ok.jpeg_quality, errors="coerce")
    return pd.DataFrame(
        {
            "split": ok.split,
            "class_name": ok.class_name,
            "format": ok.format,
            "size": pd.cut(shorter, SIZE_EDGES, labels=SIZE_LABELS).astype(str),
            "jpeg_quality": pd.cut(quality, QUALITY_EDGES, labels=QUALITY_LABELS).astype(str).where(quality.notna(), "-"),
        }
    )


def profile(table: pd.DataFrame) -> pd.DataFrame:
    """Counts per split, attribute, bucket and class of `buckets`' table: what validation writes beside its report."""
    frames = []
    for attribute in ATTRIBUTES:
        counts = table.groupby(["split", attribute, "class_name"]).size().unstack("class_name", fill_value=0)
        frames.append(counts.rename_axis(index={attribute: "value"}).reset_index().assign(attribute=attribute))
    return pd.concat(frames, ignore_index=True)[["split", "attribute", "value", *sorted(table.class_name.unique())]]


def differences(table: pd.DataFrame) -> list[str]:
    """One sentence per split and attribute of `buckets`' table whose distributions differ between
    the classes by more than WARN_DISTANCE, naming each class's commonest bucket."""
    found = []
    for split, rows in table.groupby("split"):
        for attribute in ATTRIBUTES:
            shares = pd.crosstab(rows[attribute], rows.class_name, normalize="columns")
            if shares.shape[1] != 2:
                continue
            distance = 0.5 * (shares.iloc[:, 0] - shares.iloc[:, 1]).abs().sum()
            if distance > WARN_DISTANCE:
                commonest = "; ".join(f"{name}: {shares[name].idxmax()} ({shares[name].max():.0%})" for name in shares.columns)
                found.append(
                    f"{split}: {attribute} differs between the classes (distance {distance:.2f}; {commonest}), "
                    "so a model can learn it instead of the image"
                )
    return found
