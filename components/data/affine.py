"""The one affine map of the augmentation policy, shared by every warp that applies it.

Rotation about the image centre, a shift, and a horizontal flip, as the inverse map (output
pixel -> input pixel) that a warp samples with. Coordinates are pixel indices: pixel centres
run from 0 to side - 1, so the zero policy maps every pixel onto itself. `xp` is the array
module the caller computes in (math-like numpy for Pillow's shard-time copies, tf for the tf.data
warp, keras.ops for the in-model layer), so the numbers are the same everywhere.
"""

from __future__ import annotations

import math
from typing import Any


def draw_ranges(policy: dict[str, Any], width: float, height: float) -> tuple[float, float, float]:
    """Half-widths of the uniform draws: angle in radians, shift in pixels along x and y."""
    return policy["rotation_degrees"] * math.pi / 180.0, policy["shift_fraction"] * width, policy["shift_fraction"] * height


def inverse_affine(angle: Any, shift_x: Any, shift_y: Any, flip: Any, width: Any, height: Any, xp: Any) -> tuple[Any, ...]:
    """(a, b, c, d, e, f): the output pixel (x, y) samples the input at (a x + b y + c, d x + e y + f).

    `flip` is -1 (mirror) or 1. Works elementwise on scalars or on one value per image."""
    center_x, center_y = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    cos, sin = xp.cos(angle), xp.sin(angle)
    a, b, d, e = flip * cos, sin, -flip * sin, cos
    c = center_x - a * (center_x + shift_x) - b * (center_y + shift_y)
    f = center_y - d * (center_x + shift_x) - e * (center_y + shift_y)
    return a, b, c, d, e, f


def to_pillow(coefficients: tuple[float, ...]) -> tuple[float, ...]:
    """The same map in Pillow's coordinates, where pixel centres sit at index + 0.5."""
    a, b, c, d, e, f = coefficients
    return a, b, c + 0.5 - 0.5 * (a + b), d, e, f + 0.5 - 0.5 * (d + e)
