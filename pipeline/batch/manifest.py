"""A batch job's record: ``OUT/job.json`` (the settings) and ``OUT/manifest.jsonl`` (one line per outcome).

Each line of the manifest is one recording's outcome: ``input``, ``name``, ``status`` (done,
failed, interrupted, or retried: its worker died and it went to another), ``frames``, ``fps``,
``wall_s``, ``error``, ``warnings``, ``attempt``, ``worker``, the input's ``size`` and
``mtime``, its ``outputs`` (relative to OUT; a done one's ``sizes`` too) and when it
``finished``. A recording's last line is its state. Lines are appended and flushed as
recordings finish, so a job that is killed keeps what it finished; a torn last line is ignored.

Commit: a run writes its outputs under hidden names beside their own (``staged_path``);
``commit`` writes a done run's line (with each output's size) and makes it durable, and only
then renames the outputs into place. So an output is under its own name only once the
manifest says whose it is, and a job killed at any instant is resumed without --overwrite: a
run with no done line is run again (what it left is the job's own), and ``finish`` puts in place
the staged outputs of a done line that a kill kept from their renames (each of the size it records).

Resume: a recording is skipped when its last line says done, its input has the same size and
modification time, and all its outputs are there. A job whose settings differ from job.json's
is refused (its outputs would mix two settings) unless it is started over (``--overwrite``);
job.json and the manifest are written (with ``--overwrite``, started over) with the first
outcome, so a job that never got going (a wrong model) does not hold the folder to its
settings, and a job refused before its first outcome leaves OUT as it found it (``close(undo=True)``).
One job at a time in a folder (``OUT/.job.lock``).
"""

from __future__ import annotations

import fcntl
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from pipeline.config import ConfigError
from pipeline.sinks import write_complete

MANIFEST, JOB, LOCK = "manifest.jsonl", "job.json", ".job.lock"
STATUSES = ("done", "failed", "interrupted", "retried")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def staged_path(path: Path) -> Path:
    """Where a complete output waits to be committed: a hidden name beside its own, the suffix kept
    (it sets a video's format): ``a.annotated.mp4`` -> ``.a.annotated.staged.mp4``."""
    return path.with_name(f".{path.stem}.staged{path.suffix}")


def size_of(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def stat_of(path: Path) -> tuple[int, float] | None:
    """(size, mtime) of an input, or None when it cannot be read."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, round(st.st_mtime, 6)


class Manifest:
    """The record of the job in ``out`` (created if needed); ``settings`` must match an earlier
    job's there unless ``restart`` (which starts the record over with the first outcome). Holds the folder's lock until ``close``."""

    def __init__(self, out: Path, settings: dict, restart: bool = False):
        self.out = out
        self._made = []  # the folders this job creates (out and the parents it lacks): close(undo=True) removes them
        p = out
        while not p.exists():
            self._made.append(p)
            p = p.parent
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the output folder '{out}': {exc.strerror or exc}") from None
        self.path = out / MANIFEST
        self._made_lock = not (out / LOCK).exists()
        self._lock = _hold(out / LOCK)  # held until close()
        self._restart, self._file, self._recorded = restart, None, False
        self.last: dict[str, dict] = {}
        text = self.path.read_text(encoding="utf-8", errors="replace") if self.path.exists() and not restart else ""
        for line in text.splitlines():
            try:
                entry = json.loads(line)
                self.last[entry["name"]] = entry
            except (ValueError, KeyError, TypeError):  # a line torn by a crash
                continue
        self.job, self.settings = out / JOB, settings
        if self.last:  # a job has run here: these must be its settings
            before = self._settings_before()
            if before != settings:
                self.close(undo=True)
                raise ConfigError(f"'{out}' holds a job run with other settings ({_difference(before, settings)}): "
                                  "give another --out, or --overwrite to start it over with these")
        self._job_written = bool(self.last)  # else job.json is (re)written with the first outcome
        self._torn = bool(text) and not text.endswith("\n")  # the next entry starts on a line of its own

    def _settings_before(self) -> dict | None:
        """The settings in job.json, or None when there are none to read."""
        try:
            return json.loads(self.job.read_text(encoding="utf-8"))["settings"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def is_ours(self) -> bool:
        """Whether a manifest with no whole line is still this job's: job.json (written just before the
        first line) holds these settings, so a kill tore that line (``restart``: never)."""
        return not self._restart and self._settings_before() == self.settings

    def is_done(self, name: str, path: Path, outputs: dict[str, Path]) -> bool:
        """Whether the recording was done with this input (same size and time) and its outputs are all there."""
        entry = self.last.get(name)
        if entry is None or entry.get("status") != "done":
            return False
        if [entry.get("size"), entry.get("mtime")] != list(stat_of(path) or (None, None)):
            return False
        return all(p.exists() for p in outputs.values())

    def record(self, entry: dict) -> None:
        """Append one outcome (and make it durable: a crash right after keeps it)."""
        if self._file is None:  # opened (started over, with restart) with the first outcome: a job with none leaves it as it was
            self._file = open(self.path, "w" if self._restart else "a", encoding="utf-8")  # noqa: SIM115 - until close()
            os.fsync(self._file.fileno())  # the old outcomes are gone before job.json names the new settings
            if self._torn:
                self._file.write("\n")
        if not self._job_written:
            write_complete(self.job, json.dumps({"settings": self.settings, "started": now()}, indent=2) + "\n")
            self._job_written = True
        self._recorded = True
        self.last[entry["name"]] = entry
        self._file.write(json.dumps(entry) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def commit(self, entry: dict) -> None:
        """Record a done run, then put its staged outputs (``entry["outputs"]``, relative to OUT) under
        their own names: the line first (with the outputs' ``sizes``; durable), then the renames. An
        output gone before the line is written makes the entry (updated in place) failed, none put in place."""
        finals = [self.out / rel for rel in entry["outputs"].values()]
        sizes = {kind: size_of(staged_path(p)) for kind, p in zip(entry["outputs"], finals)}
        gone = [staged_path(p) for p, size in zip(finals, sizes.values()) if size is None]
        if gone:
            entry.update(status="failed", outputs={}, error=f"its output '{gone[0]}' was gone before it was put in place")
            self.record(entry)
            return
        entry["sizes"] = sizes
        self.record(entry)
        for p in finals:
            os.replace(staged_path(p), p)

    def finish(self) -> list[str]:
        """Put in place what a job killed between a done line and its renames left staged: each output of a
        done line still under its staged name with the size the line records. Returns the recordings' names."""
        finished = []
        for name, entry in self.last.items():
            outputs, sizes = entry.get("outputs"), entry.get("sizes")
            if entry.get("status") != "done" or not isinstance(outputs, dict) or not isinstance(sizes, dict):
                continue
            for kind, rel in outputs.items():
                if not isinstance(rel, str) or Path(rel).is_absolute() or ".." in Path(rel).parts:
                    continue  # (never a file outside OUT)
                final = self.out / rel
                if sizes.get(kind) is not None and size_of(staged_path(final)) == sizes[kind]:
                    os.replace(staged_path(final), final)
                    finished.append(name)
        return sorted(set(finished))

    def close(self, undo: bool = False) -> None:
        """Release the folder; ``undo`` (a job refused before its first outcome): also remove the lock
        file and the folders this job created, so the folder is as the job found it."""
        if getattr(self, "_file", None) is not None:
            self._file.close()
            self._file = None
        if self._lock.closed:
            return
        if undo and not self._recorded:
            if self._made_lock:
                (self.out / LOCK).unlink(missing_ok=True)  # (while held: see _hold)
            for folder in self._made:  # deepest first; one that holds something now stays
                try:
                    folder.rmdir()
                except OSError:
                    break
        fcntl.flock(self._lock, fcntl.LOCK_UN)
        self._lock.close()


def _hold(path: Path):
    """The lock file ``path``, opened and locked (ConfigError when another job holds it)."""
    while True:
        try:
            lock = open(path, "a+")  # noqa: SIM115 - the caller holds it
        except FileNotFoundError:  # a refused job removed the folder it had made as this one came: make it again
            path.parent.mkdir(parents=True, exist_ok=True)
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise ConfigError(f"another rtpipe job is running in '{path.parent}': wait for it, or give another --out") from None
        try:
            if os.path.samestat(os.fstat(lock.fileno()), os.stat(path)):
                return lock
        except FileNotFoundError:
            pass
        lock.close()  # a refused job removed the file as this one opened it: lock the one there now


def _difference(before: dict | None, now_: dict) -> str:
    if not isinstance(before, dict):
        return "its job.json cannot be read"
    keys = sorted(set(before) | set(now_), key=str)
    changed = [k for k in keys if before.get(k) != now_.get(k)]
    if not changed:
        return "settings differ"
    k = changed[0]
    return f"{k}: {before.get(k)!r} then, {now_.get(k)!r} now" + (f"; {len(changed) - 1} more" if len(changed) > 1 else "")
