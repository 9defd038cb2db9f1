"""Which native engines may load without asking: the ones rtpipe built on this account.

A ``.pt2`` (AOTInductor) is a compiled shared library and a TensorRT plan can carry plugins:
loading either runs code from the file, like unpickling a checkpoint. rtpipe loads one only if

- it built that very file on this account: every build records the engine's sha256 in
  ``built-engines.json`` in the state folder (``$RTPIPE_STATE_DIR``, else
  ``$XDG_STATE_HOME/rtpipe``, else ``~/.local/state/rtpipe``: private to the user, and not
  beside the engine, where whoever planted an engine would plant its record too); or
- the user says so for this run (``--trust-engine``; never from a preset).

The default engine cache is per user too (``$RTPIPE_ENGINE_DIR``, else ``$XDG_CACHE_HOME/rtpipe/
engines``, else ``~/.cache/rtpipe/engines``), and an engine found there that rtpipe did not
record is rebuilt, not loaded. ONNX graphs are data for ONNX Runtime, not native code: no
consent is asked for them.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import stat
from pathlib import Path

from pipeline.types import InputError


class EngineTrustError(InputError):
    """A native engine rtpipe did not build here, asked to load without --trust-engine."""


def _home(env: str, xdg: str, fallback: str) -> Path:
    if os.environ.get(env):
        return Path(os.environ[env]).expanduser()
    base = Path(os.environ[xdg]).expanduser() if os.environ.get(xdg) else Path.home() / fallback
    return base / "rtpipe"


def state_dir() -> Path:
    return _home("RTPIPE_STATE_DIR", "XDG_STATE_HOME", ".local/state")


def cache_dir() -> Path:
    """The default engine cache."""
    if os.environ.get("RTPIPE_ENGINE_DIR"):
        return Path(os.environ["RTPIPE_ENGINE_DIR"]).expanduser()
    return _home("RTPIPE_CACHE_DIR", "XDG_CACHE_HOME", ".cache") / "engines"


def registry_path() -> Path:
    return state_dir() / "built-engines.json"


def _private(path: Path) -> bool:
    """Owned by this user and writable by no one else (else its records mean nothing)."""
    st = path.stat()
    return (not hasattr(os, "getuid") or st.st_uid == os.getuid()) and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def recorded() -> dict:
    """sha256 -> {path, built_at} of the engines rtpipe built on this account."""
    path = registry_path()
    try:
        if not (_private(path.parent) and _private(path)):
            return {}
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record_built(engine: Path, sha256: str) -> None:
    """Note that rtpipe built ``engine`` (with that hash) on this account."""
    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    entries = recorded()
    entries[sha256] = {"path": str(Path(engine).resolve()), "built_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    partial = folder / f".built-engines.{os.getpid()}.partial"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(entries, f, indent=1)
    os.replace(partial, registry_path())


def is_recorded(engine: Path) -> bool:
    from pipeline.sidecar import sha256

    return Path(engine).is_file() and sha256(Path(engine)) in recorded()


def require_consent(engine: Path, trust: bool) -> None:
    """Raise EngineTrustError unless the native engine (AOTInductor or TensorRT, whatever its file
    name) was built here by rtpipe, or ``trust``. (The engine's sidecar is not believed for
    anything here, nor quoted: a planted one could say anything, a rebuild command included.)"""
    engine = Path(engine)
    if trust or is_recorded(engine):
        return
    raise EngineTrustError(f"engine '{engine}' was not built by rtpipe on this account (its hash is not in {registry_path()}): "
                           "it is native code that runs when loaded; pass --trust-engine if you trust its source, or build "
                           "your own from its checkpoint with rtpipe build")
