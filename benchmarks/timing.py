"""What the benchmark scripts share: the median time of a call."""

from __future__ import annotations

import time

import numpy as np


def median_ms(fn, repeat: int) -> float:
    """The median of ``repeat`` timed calls of ``fn`` (after one untimed), in ms, 2 decimals."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return round(float(np.median(times) * 1000), 2)
