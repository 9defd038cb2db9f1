"""The builder's output check: elementwise for dense outputs, row to nearest row for top-k rows."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.build.check import compare_outputs
from pipeline.build.options import CheckFailed


def topk_rows(seed: int = 0, k: int = 50) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = np.concatenate([rng.uniform(0, 320, (1, k, 4)), np.sort(rng.uniform(0.5, 0.9, (1, k, 1)), axis=1)[:, ::-1],
                           rng.integers(0, 80, (1, k, 1))], axis=2)
    return rows.astype(np.float32)


def test_top_k_rows_may_swap_places_between_runtimes():
    ref = topk_rows()
    got = ref.copy()
    got[0, [3, 4]] = got[0, [4, 3]]  # two near-equal scores came out the other way round
    got[0, -1] = [1, 2, 3, 4, 0.5, 7]  # and the row at the cut-off gave way to another
    report = compare_outputs([{"output0": ref}], [{"output0": got}], "fp32", "m", "onnx", layout="end2end")
    assert report["outputs"]["output0"]["max_rel_diff"] == 0.0
    with pytest.raises(CheckFailed, match="output0"):  # a dense output is compared element by element
        compare_outputs([{"output0": ref}], [{"output0": got}], "fp32", "m", "onnx")


def test_a_wrong_top_k_row_still_fails():
    ref = topk_rows()
    got = ref.copy()
    got[0, 10, :4] += 25.0  # a box that moved
    with pytest.raises(CheckFailed, match="does not match its checkpoint"):
        compare_outputs([{"output0": ref}], [{"output0": got}], "fp32", "m", "aoti", layout="rtdetr-topk")
