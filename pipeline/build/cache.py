"""Engine cache: ``rtpipe run --model ckpt.pt --backend aoti|tensorrt`` builds on first use, reuses after.

Engines live in the user's cache (``pipeline.trust.cache_dir``: ``$RTPIPE_ENGINE_DIR``, else
``~/.cache/rtpipe/engines``), named by the options that make them differ (see ``engine_name``).
An engine there that rtpipe did not build on this account is rebuilt, never loaded (its hash is
not in ``pipeline.trust``'s record). Before one is reused, the key its
sidecar records -- checkpoint sha256, build options, library versions, GPU compute capability --
is recomputed from the sidecar's fields and compared with the key of what is asked for now, and
the engine file is checked against its recorded sha256; anything stale is rebuilt, with the reason.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.build import SUFFIX, build_graph, engine_name
from pipeline.build.options import BuildOptions
from pipeline.sidecar import SidecarError, cache_key, checkpoint_sha256, gpu, problems, read, versions


def engine_dir() -> Path:
    from pipeline.trust import cache_dir

    return cache_dir()


def _notice(message: str) -> None:
    sys.stderr.write(f"rtpipe: {message}\n")


def cache_options(meta, fmt: str, device: str) -> BuildOptions:
    """The build options of a cached engine: fp32, the graph's fixed batch or 1 to 16."""
    return BuildOptions(format=fmt, device=device, batch=str(meta.batch) if meta.batch else "1:1:16")


def cached_engine(graph, fmt: str, device: str, say=_notice) -> Path:
    """The cached engine for ``graph`` (a checkpoint) in format ``fmt``, built if missing or stale."""
    options = cache_options(graph.meta, fmt, device)
    out = engine_dir()
    name = engine_name(graph.label, graph.meta, options)
    engine = out / (name + SUFFIX[fmt])
    checkpoint = checkpoint_sha256(graph)
    wanted = {"checkpoint": checkpoint, "options": options.key_dict(), "versions": versions(), "gpu": gpu(device)}
    reason = stale_reason(engine, wanted, device)
    if reason is None:
        return engine
    if reason == "not built yet":
        h, w = graph.meta.fit.input_hw
        say(f"building the {fmt} engine for {graph.label} at input {h}x{w} into {engine} (first use of this shape; reused afterwards)")
    else:
        say(f"engine {engine} is stale ({reason}): rebuilding")
    return build_graph(graph, options, out, name, lambda m: say(f"build: {m}"), overwrite=True)  # the cache's own stale files


def stale_reason(engine: Path, wanted: dict, device: str) -> str | None:
    """None if the cached engine is what ``wanted`` describes and can run here, else why not."""
    if not engine.exists():
        return "not built yet"
    try:
        rec = read(engine)
    except SidecarError as exc:
        return str(exc)
    recorded = cache_key(rec["checkpoint"]["sha256"], rec["options"], rec["versions"], rec["gpu"])
    if recorded != cache_key(wanted["checkpoint"], wanted["options"], wanted["versions"], wanted["gpu"]):
        changed = [what for what, old, new in (
            ("checkpoint sha256 changed", rec["checkpoint"]["sha256"], wanted["checkpoint"]),
            ("build options changed", rec["options"], wanted["options"]),
            ("library versions changed", rec["versions"], wanted["versions"]),
            ("GPU changed", (rec["gpu"] or {}).get("compute_capability"), (wanted["gpu"] or {}).get("compute_capability")),
        ) if old != new]
        return ", ".join(changed) or "cache key changed"
    found = problems(rec, engine, device)
    if not found:
        from pipeline.trust import is_recorded

        if not is_recorded(engine):
            found.append("not built by rtpipe on this account")
    return "; ".join(found) if found else None
