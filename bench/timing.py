"""Small timing helpers shared by the benchmark sections."""

from __future__ import annotations

import time
from collections.abc import Iterable


def images_per_second(batches: Iterable, limit_images: int, warmup_batches: int = 2) -> float:
    """Rate over `limit_images` images after `warmup_batches` (thread pools, autotune, first files).

    Each element is (images, labels) with the batch on axis 0.
    """
    iterator = iter(batches)
    for _ in range(warmup_batches):
        next(iterator)
    seen, start = 0, time.perf_counter()
    for images, _ in iterator:
        seen += int(images.shape[0])
        if seen >= limit_images:
            break
    return seen / (time.perf_counter() - start)


class Stopwatch:
    """`with Stopwatch() as watch: ...` then `watch.seconds`."""

    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start
