"""The recordings of a batch job: folders (searched recursively), globs and lists of files.

Each recording gets a ``name``: its path, without its suffix and ``/``-separated, relative to
where it was found: the folder given, a glob's fixed part (``rec/*/x.mp4``: ``rec``), a list's
own folder, a file's folder. Its outputs are ``OUT/<name>.*``, so a folder's layout is kept and
names stay the same when files are added (resume relies on that). A listed file outside the
list's folder is named by its whole path (``/data/a.mp4``: ``data/a``), so no name leaves OUT.
Names are not made unique here: the job refuses two recordings whose outputs would meet.
"""

from __future__ import annotations

import glob as globlib
import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.sources import NETWORK_SCHEMES
from pipeline.types import InputError

# what a folder or glob of recordings is searched for (case-insensitive)
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".ts", ".mts", ".m2ts", ".flv", ".wmv", ".mpg", ".mpeg",
                  ".3gp")


@dataclass(frozen=True)
class Recording:
    """One input of a batch job: ``path`` (absolute) and ``name``, unique in the job (outputs are OUT/<name>.*)."""

    path: Path
    name: str


def _is_video(p: Path) -> bool:
    """A video's name, and not a folder: a FIFO, socket or device named so is a recording too, whose
    run fails and says what it is (so it is counted and named, not passed over)."""
    return p.suffix.lower() in VIDEO_SUFFIXES and p.exists() and not p.is_dir()


def _under(p: Path, folder: Path | None) -> bool:
    return folder is not None and (p == folder or folder in p.parents)


def _search(folder: Path, skip: Path | None) -> list[Path]:
    """Video files under ``folder``, recursively, sorted; hidden files and folders and ``skip`` (the job's output folder) left out."""
    def unreadable(exc: OSError):
        raise InputError(f"cannot read the folder '{exc.filename}': {exc.strerror}")

    found = []
    for root, dirs, files in os.walk(folder, onerror=unreadable):  # (symlinked folders are not followed)
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not _under((here / d).resolve(), skip))
        found += [here / f for f in sorted(files) if not f.startswith(".") and _is_video(here / f)]  # (._x.mp4: macOS metadata)
    return found


def _glob_root(pattern: str) -> Path:
    """The folder part of a glob before its first wildcard ('rec/2026-*/*.mp4' -> 'rec')."""
    parts = Path(pattern).parts
    fixed = [p for p in parts[: next(i for i, p in enumerate(parts) if globlib.has_magic(p))]]
    return Path(*fixed) if fixed else Path(".")


def _read_list(spec: str) -> tuple[list[Path], Path]:
    """``@list.txt``: one path (file or folder) per line (blank lines and ``#`` comments skipped), relative to the list's folder."""
    listed = Path(spec[1:]).expanduser()
    try:
        lines = listed.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the list '{listed}': {getattr(exc, 'strerror', None) or exc}") from None
    paths = [listed.parent / Path(line.strip()).expanduser() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not paths:
        raise InputError(f"the list '{listed}' names no recordings: one path per line")
    return paths, listed.parent


def find_recordings(specs: list[str], out: Path) -> list[Recording]:
    """The recordings that ``specs`` (DIR, GLOB, @LIST or FILE, any mix) name, in the order given
    (each folder and glob sorted), once each; files under ``out`` are never inputs. A file named in a
    list or given on its own need not exist (its run fails and the manifest says so); a folder or
    glob that finds nothing, a stream or a camera is an InputError."""
    skip = out.expanduser().resolve()
    found: list[tuple[Path, Path]] = []  # (file, the folder its name is relative to)
    for spec in specs:
        scheme = spec.split("://", 1)[0].lower() if "://" in spec else ""
        if scheme in NETWORK_SCHEMES or spec.isdigit() or spec.startswith(("/dev/video", "synthetic:")):
            raise InputError(f"'{spec}' is live, not a recording: a batch job (--out) takes files, folders, globs or @LIST; "
                             "run live sources without --out")
        if spec.startswith("@"):
            paths, root = _read_list(spec)
            for p in paths:  # a listed folder is searched as one given on its own (names stay relative to the list)
                found += [(h, root) for h in _search(p, skip)] if p.is_dir() else [(p, root)]
            continue
        path = Path(spec).expanduser()
        if globlib.has_magic(spec) and not path.exists():
            root = _glob_root(str(path))
            hits = sorted(Path(p) for p in globlib.glob(str(path), recursive=True))
            hits = [p for p in hits if _is_video(p) and not _under(p.resolve(), skip)]
            if not hits:
                raise InputError(f"no recordings match '{spec}' (looked for {', '.join(VIDEO_SUFFIXES)}; files inside --out "
                                 "are left out)")
            found += [(p, root) for p in hits]
        elif path.is_dir():
            if _under(path.resolve(), skip):
                raise InputError(f"'{spec}' is inside the output folder '{out}' (or is it): give --out a folder outside the recordings")
            hits = _search(path, skip)
            if not hits:
                raise InputError(f"no recordings in '{spec}' (looked for {', '.join(VIDEO_SUFFIXES)}, in sub-folders too); "
                                 "a folder of pictures is one source: run it without --out")
            found += [(p, path) for p in hits]
        else:
            found.append((path, path.absolute().parent))
    return _named(found)


def _named(found: list[tuple[Path, Path]]) -> list[Recording]:
    """Recordings, once each (the same file by any path), named relative to their folder."""
    seen, out = set(), []
    for p, root in found:
        full, base = Path(os.path.abspath(p)), Path(os.path.abspath(root))  # (abspath: no '..' left in a name)
        key = os.path.realpath(full)
        if key in seen:
            continue
        seen.add(key)
        rel = full.relative_to(base) if base in full.parents else full.relative_to(full.anchor)
        out.append(Recording(full, rel.with_suffix("").as_posix()))
    return out
