"""A batch job: every recording is its own run (a Session) with the same settings, the model
loaded once; outputs named after the recording, a manifest, resume, and a bad recording only
fails itself.

    job = BatchJob.create(["recordings/"], Path("out"), config)  # config: RunConfig without source or outputs
    summary = job.run(LocalRunner())  # or pipeline.batch.ray_job.RayRunner(address, workers)

Outputs of recording NAME (``inputs``): OUT/NAME.jsonl (detections), OUT/NAME.metrics.json,
OUT/NAME.events.jsonl (with lines or zones), OUT/NAME.annotated.mp4 (``video``). A run writes
them under hidden staged names (``manifest.staged_path``); the job renames a done run's into
place once its manifest line is written (``Manifest.commit``), so a kill at any instant leaves
nothing under an output's name that the manifest does not account for. A recording that fails
keeps its outputs only as ``.partial`` files, as ``rtpipe run`` does.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pipeline.batch.inputs import Recording, find_recordings
from pipeline.batch.manifest import JOB, MANIFEST, Manifest, now, staged_path, stat_of
from pipeline.config import ConfigError, RunConfig
from pipeline.runtime.pipeline import STOP_SIGNALS, StageError
from pipeline.runtime.session import Models, Session
from pipeline.sinks import partial_path, write_complete
from pipeline.types import InputError

# settings that name one run's outputs or windows: a job names its outputs itself
PER_RUN = {"save": "--save", "json_path": "--json", "events": "--events", "metrics_json": "--metrics-json", "show": "--show",
           "serve": "--serve", "heatmap": "--heatmap"}  # (a heatmap per recording: next, NAME.heatmap.png like the others)
# settings that do not change what a job writes (consent, overwriting, live-stream timing): not part of its identity
NOT_SETTINGS = {"source", "overwrite", "token", "trust_checkpoint", "trust_engine", "reconnect", "stall_timeout", *PER_RUN}

Progress = Callable[[float, "dict | None"], None]  # (recordings done, fractions of the running ones included; an outcome or None)
Record = Callable[[dict], None]


def where() -> str:
    """This process, as the manifest names a worker: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class BatchJob:
    """The recordings, the output folder and the settings every recording runs with."""

    config: RunConfig
    recordings: tuple[Recording, ...]
    out: Path
    video: bool = False

    @classmethod
    def create(cls, specs: list[str], out: str | Path, config: RunConfig, video: bool = False) -> BatchJob:
        """The job over ``specs`` (folders, globs, @lists, files); ConfigError/InputError with one line."""
        given = [flag for key, flag in PER_RUN.items() if getattr(config, key)]
        if given:
            raise ConfigError(f"{given[0]} names one run's output: with --out every recording's outputs are named after it in "
                              f"the output folder (NAME.jsonl, NAME.metrics.json; --video for NAME.annotated.mp4): drop {given[0]}")
        out = Path(out).expanduser().absolute()  # absolute, as every path a worker gets: its working folder is its own
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out '{out}' is a file: give a folder (it is created if needed)")
        config.check_tracking()
        recordings = find_recordings(specs, out)
        files = {key: str(Path(value).expanduser().absolute()) for key in ("model", "weights", "classify_crops", "classify_weights")
                 if (value := getattr(config, key)) is not None and Path(value).expanduser().is_file()}
        job = cls(config.model_copy(update=files), tuple(recordings), out, video)
        job.check_outputs()
        return job

    def check_outputs(self) -> None:
        """No two recordings write the same file, and none writes the job's own (ConfigError naming them)."""
        owner: dict[Path, Recording | None] = {self.out / name: None for name in (MANIFEST, JOB)}
        owner |= {staged_path(p): None for rec in self.recordings for p in self.outputs(rec).values()}
        for rec in self.recordings:
            for p in self.outputs(rec).values():
                if p in owner:
                    other = owner[p]
                    raise ConfigError(f"'{rec.path}' would write '{p}', " + (f"as '{other.path}' does" if other else "the job's own file")
                                      + ": rename one of them, or run them into different --out folders")
                owner[p] = rec

    def outputs(self, rec: Recording) -> dict[str, Path]:
        """What a recording's run writes, by kind: detections, metrics, events (lines or zones), video (``video``)."""
        base = str(self.out / rec.name)
        kinds = {"detections": ".jsonl", "metrics": ".metrics.json"}
        if self.config.lines or self.config.zones:
            kinds["events"] = ".events.jsonl"
        if self.video:
            kinds["video"] = ".annotated.mp4"
        return {kind: Path(base + suffix) for kind, suffix in kinds.items()}

    def config_for(self, rec: Recording) -> RunConfig:
        """The settings of one recording's run: its outputs written under their staged names (the job commits them)."""
        o = {kind: staged_path(p) for kind, p in self.outputs(rec).items()}
        return self.config.model_copy(update={"source": str(rec.path), "json_path": o["detections"], "metrics_json": None,
                                              "events": o.get("events"), "save": o.get("video"), "overwrite": True})

    def settings(self) -> dict:
        """What makes two jobs the same job (job.json): the run settings, without consent and one-run outputs."""
        return {**self.config.model_dump(mode="json", exclude=NOT_SETTINGS), "video": self.video}

    def run(self, runner: Runner, restart: bool = False, progress: Progress | None = None, handle_signals: bool = True,
            on_start: Callable[[int, int], None] | None = None) -> JobSummary:
        """Process every recording not done yet (all with ``restart``) with ``runner``; returns the summary.
        on_start(to do, skipped) once the manifest is read; progress(done, outcome) as recordings go.

        handle_signals (main thread only): Ctrl-C, SIGTERM or SIGHUP stop the job: the running
        recordings are aborted (their outputs kept as .partial, the manifest says interrupted),
        the rest stay to do; a rerun goes on from there.
        """
        started = time.perf_counter()
        manifest = Manifest(self.out, self.settings(), restart)
        if not manifest.last and not restart:  # a new job: the folder's files are not its own
            found = [p for rec in self.recordings for p in self.outputs(rec).values() if p.exists()]
            if found or (manifest.path.exists() and manifest.path.stat().st_size and not manifest.is_ours()):
                manifest.close(undo=True)
                raise ConfigError(f"'{self.out}' already holds {found[0].name if found else MANIFEST} but no job's record of it: "
                                  "give an empty or new --out, or --overwrite to replace what this job writes")
        summary = JobSummary(total=len(self.recordings), manifest=manifest.path)
        previous = {}
        if handle_signals and threading.current_thread() is threading.main_thread():
            def on_signal(signum, frame):
                if summary.signal is not None:  # a second one: stop waiting for the first to take effect
                    raise KeyboardInterrupt
                summary.signal = signal.Signals(signum).name
                runner.stop()

            previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
        try:
            manifest.finish()  # the outputs a job killed as it committed them left staged
            todo = [r for r in self.recordings if not manifest.is_done(r.name, r.path, self.outputs(r))]
            summary.skipped = summary.total - len(todo)
            if on_start is not None:
                on_start(len(todo), summary.skipped)

            def record(entry: dict) -> None:
                if entry["status"] == "done":
                    manifest.commit(entry)  # its line, then its outputs in place (or failed, if they are gone)
                else:
                    manifest.record(entry)
                summary.add(entry)

            if todo:
                runner.run(self, todo, record, progress or (lambda done, entry: None))
        except InputError:  # refused (a wrong model, Ray workers that cannot start): with no outcome yet, OUT is left as found
            manifest.close(undo=True)
            raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            manifest.close()
        summary.wall_s = round(time.perf_counter() - started, 3)
        summary.runner = runner.describe()
        return summary


@dataclass
class JobSummary:
    """What a job did: counts by outcome (``skipped``: done by an earlier run), frames, time and the failures."""

    total: int
    manifest: Path
    skipped: int = 0
    done: int = 0
    failed: int = 0
    interrupted: int = 0
    retried: int = 0
    frames: int = 0
    wall_s: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (name, error)
    signal: str | None = None
    runner: dict = field(default_factory=dict)

    def add(self, entry: dict) -> None:
        status = entry["status"]
        setattr(self, status, getattr(self, status) + 1)
        self.frames += entry.get("frames") or 0
        if status == "failed":
            self.failures.append((entry["name"], entry["error"]))

    @property
    def left(self) -> int:
        """Recordings a stopped job did not get to: a rerun does them, and the interrupted and failed ones.
        skipped + done + failed + interrupted + left == total, each recording once (``retried`` counts worker deaths)."""
        return self.total - self.skipped - self.done - self.failed - self.interrupted


class Runner(Protocol):
    """Runs a job's recordings: ``record`` each outcome, report ``progress``; ``stop`` may come from a signal handler."""

    def run(self, job: BatchJob, todo: list[Recording], record: Record, progress: Progress) -> None: ...

    def stop(self) -> None: ...

    def describe(self) -> dict: ...


def new_entry(rec: Recording, attempt: int, worker: str | None, status: str = "failed", error: str | None = None) -> dict:
    """A manifest entry for ``rec`` with nothing done yet (see pipeline.batch.manifest for the fields)."""
    size, mtime = stat_of(rec.path) or (None, None)
    return {"input": str(rec.path), "name": rec.name, "status": status, "frames": 0, "fps": None, "wall_s": None, "error": error,
            "warnings": [], "attempt": attempt, "worker": worker, "size": size, "mtime": mtime, "outputs": {}, "finished": now()}


def process(job: BatchJob, rec: Recording, models: Models, attempt: int = 1, worker: str | None = None,
            on_session: Callable[[Session], None] | None = None, on_fraction: Callable[[float], None] | None = None) -> dict:
    """One recording's run; returns its manifest entry. Never raises for a bad recording: a file
    that cannot be opened or decoded, or a run that fails, is a ``failed`` entry naming why. A done
    run's outputs are left staged for the job to commit; any other's are kept as ``.partial``."""
    started = time.perf_counter()
    entry = new_entry(rec, attempt, worker or where())
    outputs = job.outputs(rec)
    session = None
    try:
        for p in outputs.values():  # an earlier run's (another input, other settings): never left looking current
            p.parent.mkdir(parents=True, exist_ok=True)
            for old in (p, partial_path(p), staged_path(p), partial_path(staged_path(p))):
                old.unlink(missing_ok=True)
        session = Session(job.config_for(rec), models)
        if on_session is not None:
            on_session(session)
        total = session.total_frames
        metrics = session.run(on_frame=None if on_fraction is None or not total else lambda n: on_fraction(min(n / total, 1.0)),
                              handle_sigint=False)
    except StageError as exc:  # a stage or the source failed (SourceFailed too)
        metrics = session.metrics if session is not None else None
        entry["error"] = str(exc)
    except InputError as exc:  # cannot open the input (missing, empty, not a video) or write the outputs
        metrics = None
        entry["error"] = str(exc)
    except Exception as exc:  # noqa: BLE001 - one recording's surprise must not end the job; the manifest says what it was
        metrics = session.metrics if session is not None else None
        entry["error"] = f"{exc.__class__.__name__}: {exc}"
    else:
        entry["status"] = "interrupted" if metrics["aborted"] or metrics["interrupted"] else "done"
    finally:
        if session is not None:
            session.close()
    if metrics is not None:
        entry["frames"], entry["fps"] = metrics.get("frames_out", 0), metrics.get("fps")
        entry["warnings"] = warnings_of(metrics)
        done = entry["status"] == "done"  # the metrics of a run that did not complete stay partial, as its other outputs
        metrics_file = staged_path(outputs["metrics"]) if done else partial_path(outputs["metrics"])
        try:
            write_complete(metrics_file, json.dumps({**metrics, "error": entry["error"]} if entry["error"] else metrics, indent=2) + "\n")
        except OSError as exc:  # (a full disk)
            partial_path(metrics_file).unlink(missing_ok=True)
            entry["status"], entry["error"] = "failed", f"cannot write '{metrics_file}': {exc.strerror or exc}"
    if entry["status"] == "done":
        entry["outputs"] = {kind: p.relative_to(job.out).as_posix() for kind, p in outputs.items()}
    else:
        for p in outputs.values():
            keep_partial(p)
        entry["partial"] = sorted(partial_path(p).relative_to(job.out).as_posix() for p in outputs.values() if partial_path(p).exists())
    entry["wall_s"] = round(time.perf_counter() - started, 3)
    entry["finished"] = now()
    return entry


def keep_partial(path: Path) -> None:
    """What a run that did not complete wrote for ``path`` (staged, whole or not), as ``path``.partial."""
    for staged in (staged_path(path), partial_path(staged_path(path))):
        if staged.exists():
            os.replace(staged, partial_path(path))
            break
    partial_path(staged_path(path)).unlink(missing_ok=True)


def warnings_of(metrics: dict) -> list[str]:
    """What a run that completed on damaged input says about it (as ``rtpipe run`` warns)."""
    out = []
    for s in metrics.get("sources") or []:
        if s.get("missing_frames"):
            out.append(f"ended after {s['total'] - s['missing_frames']} of the {s['total']} frames it declares (truncated or damaged)")
        if s.get("corrupt_packets"):
            out.append(f"{s['corrupt_packets']} damaged packet(s) skipped")
    return out


class LocalRunner:
    """The job in this process: the model loaded once, one recording after another (each run
    is itself pipelined: a thread per stage)."""

    def __init__(self, models: Models | None = None):
        self.models = models
        self._stopped = False
        self._session: Session | None = None
        self.load_s: float | None = None

    def run(self, job: BatchJob, todo: list[Recording], record: Record, progress: Progress) -> None:
        from pipeline.runtime.session import load_models

        if self.models is None:
            started = time.perf_counter()
            self.models = load_models(job.config)
            self.load_s = round(time.perf_counter() - started, 3)
        for i, rec in enumerate(todo):
            if self._stopped:
                return
            entry = process(job, rec, self.models, on_session=self._hold, on_fraction=lambda f, i=i: progress(i + f, None))
            self._session = None
            record(entry)
            progress(i + 1, entry)

    def _hold(self, session: Session) -> None:
        self._session = session
        if self._stopped:
            session.abort()

    def stop(self) -> None:
        self._stopped = True
        if (session := self._session) is not None:
            session.abort()

    def describe(self) -> dict:
        return {"kind": "local", "workers": 1, "load_s": self.load_s}
