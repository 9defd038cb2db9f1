"""What the benchmark ran on, and how much memory the measured run took at its peak."""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from importlib import metadata
from pathlib import Path

PACKAGES = ("numpy", "onnxruntime", "onnxruntime-gpu", "av", "opencv-python-headless", "torch", "tensorrt")


def _first(path: str, key: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def gpu_name(device: str) -> str | None:
    """The CUDA device's name when torch is already loaded and the device is a GPU, else None."""
    if not device.startswith("cuda") or "torch" not in sys.modules:
        return None
    import torch

    return torch.cuda.get_device_name(torch.device(device)) if torch.cuda.is_available() else None


def machine(device: str = "cpu") -> dict:
    """CPU model, cores, memory, OS, Python, GPU (on CUDA) and the versions of the runtimes."""
    mem_kb = _first("/proc/meminfo", "MemTotal")
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return {
        "cpu": _first("/proc/cpuinfo", "model name") or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem_kb.split()[0]) / 2**20, 1) if mem_kb else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "gpu": gpu_name(device),
        "versions": versions,
    }


def _rss_kb(key: str) -> int | None:
    value = _first("/proc/self/status", key)
    return int(value.split()[0]) if value else None


def rss_mb() -> float:
    """This process's resident memory now, MiB (NaN where /proc is missing)."""
    kb = _rss_kb("VmRSS")
    return float("nan") if kb is None else kb / 1024


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def machine_cpu_seconds() -> float | None:
    """CPU time every process on the machine has used so far, summed over the cores, in seconds
    (``/proc/stat``: user, nice, system, irq, softirq and steal; not idle or iowait). None without /proc."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class Usage:
    """What this process used inside a ``with`` block: peak resident memory (MiB), CPU time
    (as cores kept busy on average), and peak CUDA memory; and the CPU time of the whole machine
    (``machine_cores_busy``, this process included; None without /proc/stat), to tell when
    other programs competed for the cores.

    On Linux the kernel's high-water mark is reset on enter (``/proc/self/clear_refs``), so the
    peak belongs to the block alone (``rss_scope`` "run"); where that is not possible it is the
    process's peak so far ("process"). ``gpu_mb``: the most torch's CUDA allocator held (None
    on the CPU).
    """

    def __init__(self, device: str = "cpu"):
        self.device = device
        self.cuda = device.startswith("cuda") and "torch" in sys.modules
        self.rss_mb: float | None = None
        self.gpu_mb: float | None = None
        self.cores_busy: float | None = None
        self.machine_cores_busy: float | None = None
        self.rss_scope = "process"

    def __enter__(self) -> Usage:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.rss_scope = "run"
        except OSError:
            pass
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
        self._cpu, self._machine, self._wall = _cpu_seconds(), machine_cpu_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        wall, machine = max(time.perf_counter() - self._wall, 1e-9), machine_cpu_seconds()
        self.cores_busy = round((_cpu_seconds() - self._cpu) / wall, 3)
        if machine is not None and self._machine is not None:
            self.machine_cores_busy = round((machine - self._machine) / wall, 3)
        kb = _rss_kb("VmHWM") if self.rss_scope == "run" else None
        if kb is None:  # no /proc: ru_maxrss is KiB on Linux, bytes on macOS
            kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform == "darwin" else 1)
            self.rss_scope = "process"
        self.rss_mb = round(kb / 1024, 1)
        if self.cuda:
            import torch

            self.gpu_mb = round(torch.cuda.max_memory_reserved(self.device) / 2**20, 1)
