"""The soak check, one minute of it: benchmarks/soak.py runs a live source through the pipeline
and fails when memory or file descriptors grow after the warm-up (30 minutes: benchmarks/README.md)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_one_minute_live_run_holds_memory_and_descriptors(tmp_path):
    out = tmp_path / "soak.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--seconds", "60", "--out", str(out)],
                       capture_output=True, text=True, timeout=240)
    result = json.loads(out.read_text())
    assert r.returncode == 0 and result["passed"], result
    assert result["rss_growth"] < 0.05 and result["fds_peak_after_warmup"] <= result["fds_after_warmup"]
    assert result["frames_out"] > 0 and result["seconds"] >= 60
    assert len(result["samples_s_rss_fds"]) >= 50  # it sampled throughout
