import os
import sys

import numpy as np
import pytest

from pipeline.bench.system import Usage, machine


def test_machine_names_cpu_cores_and_runtimes():
    m = machine()
    assert m["cores"] == os.cpu_count()
    assert m["python"] == ".".join(map(str, sys.version_info[:3]))
    assert m["gpu"] is None  # on the CPU
    assert {"numpy", "onnxruntime", "av"} <= set(m["versions"])


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
def test_usage_peak_belongs_to_the_block():
    big = np.ones(300 * 2**20, np.uint8)  # raises the process peak before the block
    del big
    with Usage() as small:
        np.ones(10 * 2**20, np.uint8).sum()
    with Usage() as large:
        a = np.ones(200 * 2**20, np.uint8)
        a.sum()
        del a
    assert small.rss_scope == large.rss_scope == "run"
    assert large.rss_mb - small.rss_mb > 150  # the earlier 300 MB peak is not counted in either
    assert large.cores_busy > 0 and small.gpu_mb is None


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="needs Linux /proc")
def test_usage_sees_the_cpu_other_processes_use():
    import subprocess
    import time

    spin = "import time\nt = time.perf_counter() + 1.5\nwhile time.perf_counter() < t: pass"
    child = subprocess.Popen([sys.executable, "-c", spin])
    try:
        time.sleep(0.2)  # the child is up and spinning
        with Usage() as use:
            time.sleep(1.0)  # this process idles; another burns a core
    finally:
        child.wait()
    assert use.cores_busy < 0.2
    assert use.machine_cores_busy - use.cores_busy > 0.5  # the spinning child, seen through /proc/stat
