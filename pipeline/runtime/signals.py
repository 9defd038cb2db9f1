"""The stop signals (SIGINT, SIGTERM, SIGHUP) of a run: the first drains, a second aborts.

``StopSignals`` owns them for as long as it is entered, from the main thread. The Python-level
handler does one thing, at any moment: it notes the signal and writes a byte to a pipe. A
watcher thread reads the pipe and calls ``on_first(name)`` for the first signal and
``on_second(name)`` for each later one. Nothing runs inside the handler that could wait on a
lock the interrupted code holds (setting an Event the main thread is setting, say), and a
second signal that comes while the outputs are being finalised is handled as one that comes
mid-run: there is no window in which Python's default handler would kill the process.

On leaving the block the handlers it replaced are put back (``rtpipe`` itself ignores the
signals from then until it has exited: see ``pipeline.cli.main``).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

# what `docker stop`, systemd and a closed terminal send: each drains like the first Ctrl-C
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143, "SIGHUP": 129}  # 128 + the signal, as a shell reports it


class StopSignals:
    """Route the stop signals to ``on_first`` / ``on_second`` (called from a watcher thread).
    ``first`` names the first signal once one came; ``count`` says how many came."""

    def __init__(self, on_first: Callable[[str], None], on_second: Callable[[str], None]):
        self.on_first, self.on_second = on_first, on_second
        self.first: str | None = None
        self.count = 0
        self._names: list[str] = []  # appended by the handler (atomic), consumed by the watcher
        self._previous: dict = {}
        self._pipe: tuple[int, int] | None = None

    @property
    def exit_code(self) -> int | None:
        """128 + the first signal, once one came."""
        return None if self.first is None else EXIT_CODES.get(self.first, 130)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is not threading.main_thread():
            return self  # signals reach the main thread only: nothing to own here
        self._pipe = os.pipe()
        threading.Thread(target=self._watch, args=(self._pipe[0],), name="rtpipe-signals", daemon=True).start()
        self._previous = {sig: signal.signal(sig, self._handler) for sig in STOP_SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        if self._pipe is None:
            return
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        os.close(self._pipe[1])  # the watcher reads EOF and ends (after what is still in the pipe)
        self._pipe = None

    def _handler(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.first is None:
            self.first = name
        self.count += 1
        self._names.append(name)
        try:
            os.write(self._pipe[1], b"s")
        except (OSError, TypeError):  # the block has ended (pipe closed): nothing to stop any more
            pass

    def _watch(self, fd: int) -> None:
        seen = 0
        try:
            while os.read(fd, 64):
                while seen < len(self._names):
                    name = self._names[seen]
                    (self.on_first if seen == 0 else self.on_second)(name)
                    seen += 1
        finally:
            os.close(fd)
