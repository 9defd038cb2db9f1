import numpy as np
import pytest

from pipeline.metrics import LatencyStats, RunMetrics, render_table


def test_percentiles_match_numpy():
    s = LatencyStats()
    data = np.random.default_rng(0).exponential(10, 1000)
    for v in data:
        s.add(float(v))
    out = s.summary()
    assert out["count"] == 1000
    assert out["p50_ms"] == pytest.approx(np.percentile(data, 50), abs=1e-3)
    assert out["p99_ms"] == pytest.approx(np.percentile(data, 99), abs=1e-3)
    assert out["mean_ms"] == pytest.approx(data.mean(), abs=1e-3)


def test_ring_buffer_keeps_the_newest_in_fixed_memory():
    s = LatencyStats(keep=10)
    for v in range(100):
        s.add(float(v))
    out = s.summary()
    assert out["count"] == 100 and out["p50_ms"] == pytest.approx(94.5) and s.last() == 99
    assert s._buf.nbytes == 80


def test_empty_summary_and_table():
    m = RunMetrics()
    m.stage("infer")
    d = m.to_dict()
    assert d["stages"]["infer"]["p50_ms"] is None and d["frames_out"] == 0 and d["dropped"] == 0
    table = render_table(d)
    assert table.row_count == 2  # infer + end to end
