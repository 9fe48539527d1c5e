"""The degradations detectors meet in practice, as small numpy functions with no TensorFlow.

Training uses them as CNNDetection's robustness augmentation (Wang et al. 2020: JPEG at a random
quality and Gaussian blur, each with a probability); evaluation uses them at fixed strengths for
the robustness table. One implementation for both, and for any reader: the tf.data reader wraps
`degrade_batch` in tf.numpy_function, a TensorFlow-free reader calls it as it is.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Re-encode one uint8 HxWx3 image as JPEG at `quality` (Pillow's default 4:2:0 chroma, as
    cameras and websites save) and decode it again."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(buffer).convert("RGB"))


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of one uint8 image, per channel, edges reflected."""
    if sigma <= 0:
        return image
    smoothed = gaussian_filter(image.astype(np.float32), sigma=(sigma, sigma, 0), mode="reflect")
    return np.clip(np.rint(smoothed), 0, 255).astype(np.uint8)


def down_up(image: np.ndarray, factor: float) -> np.ndarray:
    """Downscale by `factor` and back (bilinear): what a thumbnail or a re-upload does."""
    height, width = image.shape[:2]
    small = Image.fromarray(image).resize((max(1, round(width * factor)), max(1, round(height * factor))), Image.Resampling.BILINEAR)
    return np.asarray(small.resize((width, height), Image.Resampling.BILINEAR))


def is_active(policy: dict[str, Any]) -> bool:
    return bool(policy.get("jpeg_probability") or policy.get("blur_probability"))


def degrade_batch(images: np.ndarray, policy: dict[str, Any], seed: np.ndarray) -> np.ndarray:
    """The robustness augmentation over a uint8 batch: blur, then JPEG (the order CNNDetection
    uses), each drawn per image with its probability and a strength uniform in its range."""
    rng = np.random.default_rng(np.asarray(seed, dtype=np.int64).tolist())
    out = np.array(images, copy=True)
    for index in range(out.shape[0]):
        if rng.random() < policy["blur_probability"]:
            out[index] = blur(out[index], rng.uniform(*policy["blur_sigma_range"]))
        if rng.random() < policy["jpeg_probability"]:
            low, high = policy["jpeg_quality_range"]
            out[index] = jpeg(out[index], rng.integers(low, high + 1))
    return out
