"""How an image meets the model's input size (`data.fit`), without TensorFlow.

`resize` resamples, as the origin report did. `crop` and `pad` never resample an image at or
below the model size, because a generator's traces live in the highest frequencies and any
interpolation smears them (CNNDetection trains on crops for this reason). Shards keep a margin
around training images so the reader can draw a random crop each epoch; validation, test and
prediction get the same centre crop, so a model is scored as it was trained; `detector predict
--crops 5` instead averages the scores of the centre and the four corner crops (`multi_crops`),
which sees up to 2× the model size per side of a large image (CNNDetection's multi-crop test).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

FITS = ("resize", "crop", "pad")
# Training images keep up to this many times the model size per side, for random crops.
TRAIN_CROP_MARGIN = 2
# Crops averaged at test for `crop`: the centre alone, or the centre and the four corners.
TEST_CROPS = (1, 5)


def fit_image(image: Image.Image, size: int, fit: str, margin: int = 1) -> Image.Image:
    """The image as the shards store it: exactly size×size, or for `crop` with margin > 1, up to
    margin×size per side (the reader then crops it to size)."""
    if fit not in FITS:
        raise ValueError(f"Unknown fit. Expected one of {FITS}. Received: data.fit={fit!r}")
    if fit == "resize":
        return image if image.size == (size, size) else image.resize((size, size), Image.Resampling.BILINEAR)
    if fit == "pad" and max(image.size) > size:
        # Larger than the model: shrink the whole image to fit (the one case pad resamples).
        scale = size / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.BILINEAR)
    image = pad_to(image, size)
    return centre_crop(image, size * margin if fit == "crop" else size)


def pad_to(image: Image.Image, size: int) -> Image.Image:
    """Centre the image on a black canvas at least size×size; pixels are copied, never resampled."""
    width, height = max(image.width, size), max(image.height, size)
    if (width, height) == image.size:
        return image
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    top, left = (height - image.height) // 2, (width - image.width) // 2
    canvas[top : top + image.height, left : left + image.width] = np.asarray(image.convert("RGB"))
    return Image.fromarray(canvas)


def centre_crop(image: Image.Image, side: int) -> Image.Image:
    """The centre side×side window, or the whole image on an axis already at or below `side`."""
    width, height = min(image.width, side), min(image.height, side)
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return image.crop((left, top, left + width, top + height))


def multi_crops(pixels: np.ndarray, size: int, count: int) -> np.ndarray:
    """(count, size, size, 3): the centre window of an H×W×3 array (H, W >= size, as `crop`
    leaves them), then for count 5 its four corners. A side at exactly `size` gives the same
    window five times, so small images score as with the centre crop alone."""
    if count not in TEST_CROPS:
        raise ValueError(f"Expected one of {TEST_CROPS} crops. Received: crops={count}")
    height, width = pixels.shape[:2]
    if min(height, width) < size:
        raise ValueError(f"Image smaller than the model size {size}. Received: shape={pixels.shape}")
    tops_lefts = [((height - size) // 2, (width - size) // 2)]
    if count == 5:
        tops_lefts += [(0, 0), (0, width - size), (height - size, 0), (height - size, width - size)]
    return np.stack([pixels[top : top + size, left : left + size] for top, left in tops_lefts])
