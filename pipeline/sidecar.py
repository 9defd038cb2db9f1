"""Sidecar metadata: ``NAME.json`` beside every engine, and the checks made before one is loaded.

The sidecar says what the engine is (family, task, names, input and normalisation, outputs,
precision, batch range), how it was made (checkpoint sha256, build options, library versions,
GPU), how it was checked against its checkpoint, and the command that rebuilds it. An engine
whose file no longer matches its sidecar, or whose sidecar does not fit this machine, is refused
with that command: never loaded silently.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from pathlib import Path

from pipeline.types import InputError

SCHEMA = 1
# what every engine record holds, and of what type (``read`` refuses any other)
RECORD_FIELDS = {"format": str, "engine_sha256": str, "engine_bytes": int, "model": dict, "versions": dict, "options": dict,
                 "command": str, "batch": dict, "checkpoint": dict, "precision": str, "device": str}
# the libraries an engine of each format depends on: a different version means a rebuild
RUNTIME_LIBS = {"onnx": ("onnxruntime",), "aoti": ("torch",), "tensorrt": ("tensorrt",)}
BUILD_LIBS = ("rtpipe", "torch", "torchvision", "onnx", "onnxruntime", "tensorrt")


class SidecarError(InputError):
    """An engine that cannot be used as it is; the message says how to rebuild it."""


def sidecar_path(engine: str | Path) -> Path:
    return Path(engine).with_suffix(".json")


def engine_of(path: Path) -> Path:
    """The engine a path names: itself, or for a sidecar ``NAME.json`` the engine beside it."""
    if path.suffix != ".json":
        return path
    return next((p for p in (path.with_suffix(s) for s in (".pt2", ".engine", ".plan", ".onnx")) if p.exists()), path.with_suffix(".onnx"))


def sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def checkpoint_sha256(graph) -> str:
    """What identifies a graph's weights: its source file's sha256 (or its label when it has none, e.g. random init)."""
    return sha256(graph.source) if graph.source and graph.source.is_file() else f"unhashed:{graph.label}"


def versions(names=BUILD_LIBS) -> dict[str, str | None]:
    """Installed versions (None: not installed)."""
    out = {}
    for n in names:
        try:
            out[n] = importlib.metadata.version(n)
        except importlib.metadata.PackageNotFoundError:
            out[n] = None
    return out


def gpu(device: str) -> dict | None:
    """Name and compute capability of a CUDA device; None for the CPU."""
    if not device.startswith("cuda"):
        return None
    import torch

    index = int(device.split(":")[1]) if ":" in device else 0
    major, minor = torch.cuda.get_device_capability(index)
    return {"name": torch.cuda.get_device_name(index), "compute_capability": f"{major}.{minor}"}


def cache_key(checkpoint_sha256: str, options: dict, libs: dict, gpu_info: dict | None) -> str:
    """What an engine depends on, hashed: weights, build options, library versions, GPU model."""
    cc = gpu_info["compute_capability"] if gpu_info else None
    blob = json.dumps({"checkpoint": checkpoint_sha256, "options": options, "versions": libs, "gpu": cc}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def write(engine: Path, record: dict) -> Path:
    """Write the sidecar atomically (temporary name, then rename), after the engine itself."""
    path = sidecar_path(engine)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read(engine: str | Path) -> dict:
    engine = Path(engine)
    path = sidecar_path(engine)
    if not engine.exists() and not path.exists():
        raise SidecarError(f"engine '{engine}' not found")
    if not path.is_file():
        raise SidecarError(f"engine '{engine}' has no sidecar {path.name}: rebuild it with rtpipe build (the sidecar says what the engine is)")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SidecarError(f"sidecar '{path}' is not valid JSON ({exc}): rebuild the engine with rtpipe build") from exc
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        raise SidecarError(f"sidecar '{path}' is not an rtpipe engine record (no schema {SCHEMA}): rebuild the engine with rtpipe build")
    missing = [k for k in RECORD_FIELDS if k not in record]
    wrong = [k for k, kind in RECORD_FIELDS.items() if k in record and not isinstance(record[k], kind)]
    if record.get("format") not in RUNTIME_LIBS:
        wrong.append("format")
    if missing or wrong:
        what = ", ".join([f"missing {k}" for k in missing] + [f"bad {k} ({record[k]!r:.40})" for k in wrong])
        raise SidecarError(f"sidecar '{path}' is damaged ({what}): rebuild the engine with rtpipe build")
    return record


def problems(record: dict, engine: Path | None = None, device: str | None = None) -> list[str]:
    """Why the engine described by ``record`` cannot run here (empty: it can).

    engine: also check the file against its recorded sha256. device: the device it is asked to
    run on (its compute capability must be the one it was built for).
    """
    found = []
    if engine is not None:
        if not engine.is_file():
            found.append(f"engine file '{engine}' is missing")
        elif engine.stat().st_size != record.get("engine_bytes") or sha256(engine) != record["engine_sha256"]:
            found.append(f"'{engine.name}' does not match its sidecar (truncated, replaced or corrupt)")
    for lib, built, here in _runtime_versions(record):
        if here is None or not _compatible(lib, built, here):
            found.append(f"built with {lib} {built}, this machine has {lib} {here or '(not installed)'}"
                         + (f" (a {record['format']} engine needs the same {lib} {_SAME.get(lib, 'release')})" if here else ""))
    gpu_built = record.get("gpu")
    if gpu_built is not None and device is not None:
        if not device.startswith("cuda"):
            found.append(f"built for a CUDA GPU ({gpu_built['name']}), asked to run on {device}")
        else:
            here = gpu(device)
            if here["compute_capability"] != gpu_built["compute_capability"]:
                found.append(
                    f"built for compute capability {gpu_built['compute_capability']} ({gpu_built['name']}), "
                    f"this GPU is {here['compute_capability']} ({here['name']})"
                )
    elif gpu_built is None and device is not None and device.startswith("cuda") and record["format"] == "aoti":
        found.append(f"built for the CPU, asked to run on {device}")
    return found


# What a runtime needs to match of the version an engine was built with: ONNX Runtime runs any
# ONNX graph of a supported opset (a difference is only a note); an AOTInductor package is
# compiled against one torch release line; a TensorRT plan runs only on its TensorRT version.
_SAME = {"torch": "major.minor release", "tensorrt": "version"}


def _runtime_versions(record: dict) -> list[tuple[str, str | None, str | None]]:
    now = versions(RUNTIME_LIBS[record["format"]])
    return [(lib, record["versions"].get(lib), here) for lib, here in now.items()]


def _compatible(lib: str, built: str | None, here: str) -> bool:
    if lib == "onnxruntime":
        return True
    if lib == "torch":
        return built is not None and built.split(".")[:2] == here.split(".")[:2]
    return built == here


def notes(record: dict) -> list[str]:
    """Differences from the machine the engine was built on that do not stop it running here."""
    return [f"built with {lib} {built}, this machine has {here} (fine: {_why_fine(lib)})"
            for lib, built, here in _runtime_versions(record) if here is not None and built != here and _compatible(lib, built, here)]


def _why_fine(lib: str) -> str:
    return "ONNX Runtime runs graphs of older and newer releases" if lib == "onnxruntime" else "same release line"


def check_device(engine: str | Path, device: str) -> None:
    """Refuse to run ``engine`` on ``device`` when it was built for another (CPU/CUDA, GPU model)."""
    record = read(engine)
    found = problems(record, None, device)
    if found:
        hint = f"use --device {record['device']} or rebuild it with: " if record.get("device") != device else "rebuild it with: "
        raise SidecarError(f"engine '{engine}' cannot run on {device}: {'; '.join(found)}; {hint}{rebuild_command(record)}")


def load_checked(engine: str | Path, device: str | None = None) -> dict:
    """The sidecar of an engine that can run here, or a one-line refusal with the rebuild command."""
    engine = Path(engine)
    record = read(engine)
    found = problems(record, engine, device)
    if found:
        raise SidecarError(f"engine '{engine}' cannot be used: {'; '.join(found)}; rebuild it with: {rebuild_command(record)}")
    return record


def rebuild_command(record: dict) -> str:
    """The recorded build command, as one that replaces the engine: records written before
    ``rtpipe build`` refused existing outputs lack ``--overwrite``."""
    command = record["command"]
    return command if "--overwrite" in command.split() else command + " --overwrite"
