"""The batch job on Ray (``rtpipe run DIR --out OUT --ray [ADDRESS]``): Ray starts the workers
(actors) where the cluster has room, one per GPU (``--device cuda``) or N on CPUs; each loads
the model once and runs recordings one after another, exactly as the single-process job does
(``job.process``). The driver, here, hands each idle worker the next recording, writes the
manifest and shows the progress.

- No address: a local Ray instance for this job (started and stopped here); an address
  (``auto``, ``HOST:6379``; or RAY_ADDRESS): that cluster. Not Ray Client (``ray://``): the
  driver runs on a node of the cluster.
- A worker that dies (killed, out of memory, its node lost) is restarted by Ray; each recording
  it held goes back to the queue and the next idle worker takes it, up to ``retries`` times
  (the manifest says ``retried``, then the outcome); after that it is ``failed``. The restarted
  worker gets recordings again once it answers (so none is charged for a call it never got).
- Workers read the inputs and write the outputs themselves: on a cluster both must be on
  storage every node mounts at the same path (each worker checks it sees the output folder).
- Ray is an extra (``pip install 'rtpipe[ray]'``).
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections import deque
from pathlib import Path

from pipeline.batch.inputs import Recording
from pipeline.batch.job import BatchJob, Progress, Record, new_entry, process, where
from pipeline.config import ConfigError
from pipeline.types import InputError

READY_TIMEOUT_S = 300.0  # how long workers may take to start and load the model before the job gives up on them
POLL_S = 0.5


def check_address(address: str) -> None:
    """``--ray ADDRESS``: local, auto or HOST:PORT; a path is a recording that argparse gave --ray."""
    if Path(address).exists() and address != "auto":
        raise ConfigError(f"--ray took '{address}' as the cluster's address: put the recordings before --ray (rtpipe run "
                          f"{address} --out OUT --ray), or give the address (auto, HOST:6379)")
    if address.startswith("ray://"):
        raise ConfigError("--ray ray://...: Ray Client is not supported (the driver writes the manifest where the workers write "
                          "the outputs): run rtpipe on a node of the cluster with --ray auto, or --ray HEAD_IP:6379")
    if address not in ("local", "auto") and not re.fullmatch(r"[\w.\-]+:\d{1,5}|\[[0-9a-fA-F:]+\]:\d{1,5}", address):
        raise ConfigError(f"--ray {address!r} is not a Ray address: give auto or HOST:6379 (or nothing, for a local instance)")


def reachable(address: str, timeout: float = 5.0) -> None:
    """A HOST:PORT that does not answer is a one-line error now, not Ray's endless retries."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc} (is 'ray start --head' running "
                          "there, and the port open?)") from None


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'rtpipe[ray]' (on every node of a cluster)") from None
    return ray


class Worker:
    """A Ray actor's body (wrapped by ``ray.remote`` when a job starts): the model loaded once, then
    one recording per ``process`` call. ``progress`` and ``abort`` answer while a recording runs
    (the actor has a second thread for them)."""

    def __init__(self, job: BatchJob):
        from pipeline.runtime.session import load_models

        config = job.config
        if config.device.startswith("cuda"):  # Ray gives each worker its own GPU, as cuda:0
            config = config.model_copy(update={"device": "cuda"})
            job = BatchJob(config, job.recordings, job.out, job.video)
        self.job, self.where, self.error = job, where(), None
        self._session, self._fraction = None, 0.0
        started = time.perf_counter()
        try:
            if not job.out.is_dir():
                raise InputError(f"worker {self.where} cannot see the output folder '{job.out}': on a cluster, the inputs and --out "
                                 "must be on storage every node mounts at the same path")
            self.models = load_models(config)
        except InputError as exc:  # said by ready(): the job stops with this one line
            self.error = f"{exc} (worker {self.where})"
        self.load_s = round(time.perf_counter() - started, 3)

    def ready(self) -> tuple[str, float, str | None]:
        """(host:pid, seconds the model took to load, why it could not start or None)."""
        return self.where, self.load_s, self.error

    def process(self, rec: Recording, attempt: int) -> dict:
        if self.error is not None:  # a restart that could not load the model
            raise RuntimeError(self.error)
        self._fraction = 0.0
        try:
            return process(self.job, rec, self.models, attempt, self.where, on_session=self._hold, on_fraction=self._progress)
        finally:
            self._session = None

    def _hold(self, session) -> None:
        self._session = session

    def _progress(self, fraction: float) -> None:
        self._fraction = fraction

    def progress(self) -> float:
        return self._fraction if self._session is not None else 0.0

    def abort(self) -> None:
        if (session := self._session) is not None:
            session.abort()


class RayRunner:
    """Runs a job's recordings on Ray workers; ``address`` None starts a local instance."""

    def __init__(self, address: str | None = None, workers: int | None = None, retries: int = 2):
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers {workers}: give 1 or more")
        if retries < 0:
            raise ConfigError(f"--retries {retries}: give 0 or more")
        self.address, self.workers, self.retries = address, workers, retries
        self._stopped = False
        self.timings: dict = {}
        self._busy: dict = {}  # ref -> (worker, recording), while a job runs
        self._where: dict = {}  # worker -> host:pid (of its last start)

    def stop(self) -> None:
        self._stopped = True

    def running(self) -> dict[str, str]:
        """The recordings being processed now, by name, and the worker (host:pid, since its last start) each is on."""
        return {rec.name: self._where.get(w, "?") for w, rec in list(self._busy.values())}

    def describe(self) -> dict:
        address = self.address or os.environ.get("RAY_ADDRESS") or "local"
        return {"kind": "ray", "address": address, "workers": self.workers, "retries": self.retries, **self.timings}

    def run(self, job: BatchJob, todo: list[Recording], record: Record, progress: Progress) -> None:
        ray = import_ray()
        started = time.perf_counter()
        local = self.address is None and not os.environ.get("RAY_ADDRESS") and not ray.is_initialized()
        gpu = job.config.device.startswith("cuda")
        if not ray.is_initialized():
            options = dict(include_dashboard=False, logging_level="ERROR", log_to_driver=False)
            if local:
                options["num_cpus"] = max(os.cpu_count() or 1, self.workers or 1)
            address = self.address or os.environ.get("RAY_ADDRESS")
            if address not in (None, "auto"):
                check_address(address)
                reachable(address)
            try:
                ray.init(address=self.address, **options)
            except Exception as exc:  # noqa: BLE001 - Ray's many ways of not connecting, as one line
                raise ConfigError(f"cannot start or reach Ray{f' at {address}' if address else ''}: "
                                  f"{' '.join(str(exc).split())[:300]}") from None
        self.timings["init_s"] = round(time.perf_counter() - started, 3)
        try:
            self._run(ray, job, todo, record, progress, gpu)
        finally:
            stopping = time.perf_counter()
            if local:
                ray.shutdown()
            self.timings["shutdown_s"] = round(time.perf_counter() - stopping, 3)

    def _count(self, ray, gpu: bool) -> int:
        resources = ray.cluster_resources()
        if gpu:
            gpus = int(resources.get("GPU", 0))
            if gpus == 0:
                raise ConfigError("--device cuda with --ray: the Ray cluster has no GPUs (start its nodes with GPUs, or use --device cpu)")
            return self.workers or gpus
        return self.workers or max(1, int(resources.get("CPU", 1)) // 2)

    def _start(self, ray, job: BatchJob, gpu: bool) -> list:
        n = self._count(ray, gpu)
        self.workers = n
        actor = ray.remote(Worker).options(num_cpus=1, num_gpus=1 if gpu else 0, max_restarts=-1, max_task_retries=0,
                                           max_concurrency=2)
        started = time.perf_counter()
        workers = [actor.remote(job) for _ in range(n)]
        refs = [w.ready.remote() for w in workers]
        waiting = refs
        while waiting and time.perf_counter() - started < READY_TIMEOUT_S and not self._stopped:
            ready, waiting = ray.wait(refs, num_returns=n, timeout=POLL_S)
        if self._stopped:
            for w in workers:
                ray.kill(w)
            raise KeyboardInterrupt  # stopped before any recording started
        if waiting:
            for w in workers:
                ray.kill(w)
            raise ConfigError(f"only {n - len(waiting)} of {n} Ray workers started within {READY_TIMEOUT_S:.0f} s: the cluster lacks "
                              f"{'GPUs' if gpu else 'CPUs'} for them (give fewer --workers)")
        answers = ray.get(refs)
        if errors := [error for _, _, error in answers if error is not None]:
            for w in workers:
                ray.kill(w)
            raise ConfigError(errors[0])
        self.timings["ready_s"] = round(time.perf_counter() - started, 3)
        self.timings["load_s"] = max(load for _, load, _ in answers)
        self.timings["nodes"] = len({w.rsplit(":", 1)[0] for w, _, _ in answers})
        self._where = {w: where for w, (where, _, _) in zip(workers, answers)}
        return workers

    def _run(self, ray, job: BatchJob, todo: list[Recording], record: Record, progress: Progress, gpu: bool) -> None:
        workers = self._start(ray, job, gpu)
        started = time.perf_counter()
        queue = deque(todo)
        attempts: dict[str, int] = {}
        busy = self._busy
        idle = list(workers)
        # a worker that died is given recordings again only once it answers ready() (a call that reaches
        # it while Ray restarts it fails, and would be charged to a recording that never started)
        restarting: dict = {}  # ref of its ready() call -> (worker, when it died)
        asking: dict = {}  # worker -> (when to call ready() again, when it died), after a call it missed
        done = 0
        try:
            while (queue and not self._stopped and (idle or busy or restarting or asking)) or busy:
                while idle and queue and not self._stopped:
                    w, rec = idle.pop(0), queue.popleft()
                    attempts[rec.name] = attempts.get(rec.name, 0) + 1
                    busy[w.process.remote(rec, attempts[rec.name])] = (w, rec)
                if self._stopped:
                    self._abort(ray, busy, record)
                    return
                now = time.perf_counter()
                for w, (at, died) in list(asking.items()):
                    if now >= at:
                        del asking[w]
                        restarting[w.ready.remote()] = (w, died)
                if not busy and not restarting:
                    time.sleep(POLL_S)
                    continue
                ready, _ = ray.wait([*busy, *restarting], num_returns=1, timeout=POLL_S)
                for ref in ready:
                    if ref in restarting:
                        self._back(ray, ref, restarting, asking, idle)
                        continue
                    w, rec = busy.pop(ref)
                    try:
                        entry = ray.get(ref)
                        idle.append(w)
                    except ray.exceptions.RayActorError as exc:
                        entry = self._lost(rec, attempts[rec.name], exc)
                        if entry["status"] == "retried":
                            queue.appendleft(rec)
                        restarting[w.ready.remote()] = (w, time.perf_counter())
                    except ray.exceptions.RayError as exc:  # the worker raised (process() records a bad recording itself)
                        idle.append(w)
                        cause = " ".join(str(getattr(exc, "cause", None) or exc).split())[:300]
                        entry = new_entry(rec, attempts[rec.name], None, error=f"its worker failed: {cause}")
                    record(entry)
                    if entry["status"] != "retried":
                        done += 1
                        progress(done, entry)
                progress(done + self._fractions(ray, busy), None)
            if queue and not self._stopped:  # every worker died and none came back
                for rec in queue:
                    done += 1
                    entry = new_entry(rec, attempts.get(rec.name, 0), None, error=f"no Ray worker left: every worker died and none "
                                      f"was back within {READY_TIMEOUT_S:.0f} s")
                    record(entry)
                    progress(done, entry)
        finally:
            self.timings["run_s"] = round(time.perf_counter() - started, 3)
            for w in workers:
                ray.kill(w)

    def _back(self, ray, ref, restarting: dict, asking: dict, idle: list) -> None:
        """A dead worker's ready() answered: it is idle again (at its new host:pid), or is asked again
        shortly, or after READY_TIMEOUT_S without an answer is not used again."""
        w, died = restarting.pop(ref)
        try:
            where, _, _ = ray.get(ref)
        except ray.exceptions.RayActorError:
            if time.perf_counter() - died < READY_TIMEOUT_S:
                asking[w] = (time.perf_counter() + POLL_S, died)
            return
        self._where[w] = where
        idle.append(w)

    def _fractions(self, ray, busy: dict) -> float:
        """How far the running recordings are, summed (each 0..1; one that does not answer at once counts 0)."""
        if not busy:
            return 0.0
        refs = [w.progress.remote() for w, _ in busy.values()]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0.2)
        total = 0.0
        for ref in ready:
            try:
                total += ray.get(ref)
            except ray.exceptions.RayError:
                pass
        return total

    def _lost(self, rec: Recording, attempt: int, exc: BaseException) -> dict:
        """The entry for a recording whose worker died under it: retried, or failed after ``retries``."""
        reason = f"its worker died (attempt {attempt} of {self.retries + 1}): {' '.join(str(exc).split())[:300]}"
        return new_entry(rec, attempt, None, "retried" if attempt <= self.retries else "failed", reason)

    def _abort(self, ray, busy: dict, record: Record) -> None:
        """A stopped job: abort the running recordings (their outputs stay .partial) and record them as interrupted."""
        if not busy:
            return
        for w, _ in busy.values():
            w.abort.remote()
        ready, _ = ray.wait(list(busy), num_returns=len(busy), timeout=30)
        for ref, (_, rec) in list(busy.items()):
            try:
                entry = ray.get(ref) if ref in ready else None
            except ray.exceptions.RayError:
                entry = None
            if entry is None:  # no answer: the worker is stopped with the job, its outputs stay .partial
                entry = new_entry(rec, 0, None, "interrupted", "the job was stopped")
            record(entry)  # (one that finished before the abort reached it counts as done)
        busy.clear()


