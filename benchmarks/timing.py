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


def machine() -> dict:
    """What ran the benchmark, for its JSON."""
    import platform

    return {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()}


def report(result: dict, out=None) -> None:
    """Print ``result`` as JSON and, with ``out`` (a Path), write it there too."""
    import json

    text = json.dumps(result, indent=1)
    print(text)
    if out:
        out.write_text(text + "\n")
