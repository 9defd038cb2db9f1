"""benchmarks/gpu/: the one-call GPU check. Its dry run (the same steps on the CPU, tiny sizes)
runs here so that the kit cannot rot, and its install line is tried for the GPU machine's Python."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KIT = REPO / "benchmarks" / "gpu"
STEPS = ("env", "tests", "build", "bench", "sources", "decode")


def test_the_dry_run_passes_and_writes_one_json_per_step(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run(["bash", str(KIT / "check.sh"), "--dry-run", "--out", str(out)], capture_output=True, text=True,
                       timeout=1500, env={**os.environ, "PYTHON": sys.executable})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}.json" for s in (*STEPS, "summary"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dry_run"] and {k: v["status"] for k, v in summary["steps"].items()} == dict.fromkeys(STEPS, "ok")
    assert all(v["seconds"] <= v["cap_s"] for v in summary["steps"].values())
    assert "budget" in r.stdout and "decode" in r.stdout  # the time budget, and a line per step
    bench = json.loads((out / "bench.json").read_text())
    assert sorted((c["config"]["path"], c["config"]["batch"]) for c in bench["configs"]) == [("cpu", 1), ("cpu", 2), ("gpu", 1), ("gpu", 2)]
    assert all(c["engine_fps"] > 0 and c["e2e_fps"] > 0 for c in bench["configs"]) and "gpu" in bench["machine"]
    build = json.loads((out / "build.json").read_text())
    assert build["sidecar"]["format"] == "aoti" and build["sidecar"]["batch"]
    sources = json.loads((out / "sources.json").read_text())
    assert [s["frames_out"] for s in sources["per_source"]] == [12, 12] and sources["aggregate_fps"] > 0
    tests = json.loads((out / "tests.json").read_text())
    assert tests["counts"].get("passed", 0) > 0 and not tests["failed"]
    assert json.loads((out / "decode.json").read_text())["cpu"]["frames"] == 12


def wheel(folder: Path, name: str, tag: str) -> Path:
    """A minimal wheel of a one-module package, built by hand (no download, no build backend)."""
    dist = f"{name}-1.0"
    path = folder / f"{name}-1.0-{tag}.whl"
    files = {f"{name}/__init__.py": "VALUE = 42\n",
             f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
             f"{dist}.dist-info/WHEEL": f"Wheel-Version: 1.0\nGenerator: rtpipe-test\nRoot-Is-Purelib: false\nTag: {tag}\n"}
    files[f"{dist}.dist-info/RECORD"] = "".join(f"{f},,\n" for f in files) + f"{dist}.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for f, text in files.items():
            z.writestr(f, text)
    return path


def test_the_install_line_installs_wheels_for_the_gpu_machines_python_into_a_clean_folder(tmp_path):
    """check.sh's install line (install-wheels.sh), for CPython 3.12 on x86-64 manylinux as on the
    GPU machine, whatever Python runs here; the wheels are made here, nothing is downloaded."""
    wheels = tmp_path / "whl"
    wheels.mkdir()
    wheel(wheels, "rtpipe_probe", "cp312-cp312-manylinux_2_17_x86_64")
    wheel(wheels, "rtpipe_pure", "py3-none-any")
    target = tmp_path / "site"
    device = ["--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:",
              "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64"]
    r = subprocess.run(["bash", str(KIT / "install-wheels.sh"), str(wheels), str(target), *device], capture_output=True,
                       text=True, timeout=300, env={**os.environ, "PYTHON": sys.executable})
    assert r.returncode == 0, r.stderr
    assert (target / "rtpipe_probe" / "__init__.py").read_text() == "VALUE = 42\n"
    assert (target / "rtpipe_pure" / "__init__.py").exists()
    assert not list(target.rglob("*.pyc"))  # --no-compile: nothing written for this Python
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    wheel(wrong, "rtpipe_arm", "cp312-cp312-manylinux_2_17_aarch64")
    r = subprocess.run(["bash", str(KIT / "install-wheels.sh"), str(wrong), str(tmp_path / "site2"), *device], capture_output=True,
                       text=True, timeout=300, env={**os.environ, "PYTHON": sys.executable})
    assert r.returncode != 0  # a wheel for another machine is refused, not installed
