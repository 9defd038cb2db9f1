"""A bounded, ordered queue of records on disk: what one destination (an MQTT broker, a webhook)
has not acknowledged yet.

- ``put`` appends a record (one line) to the newest segment file and flushes it, so a record
  outlives a crash or restart of the service; when the records waiting would exceed ``cap_bytes``
  the new one is refused and counted in ``dropped`` (the ones waiting keep their order).
- ``next`` gives the oldest record not yet acknowledged (the same one until it is), ``ack``
  moves past it: the position is written to ``cursor`` (replaced atomically), and a segment
  read to its end is deleted. A service restarted on the same folder goes on from the cursor.
- One writer and one reader thread at a time (the outbox's), under one lock.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

SEGMENT_BYTES = 1 << 20  # a segment file is closed and a new one begun past this size
CURSOR = "cursor"


def segment_name(n: int) -> str:
    return f"{n:012d}.jsonl"


class Spool:
    """Records (str, one line each, no newline) waiting for a destination, in ``folder``."""

    def __init__(self, folder: str | Path, cap_bytes: int):
        self.folder, self.cap = Path(folder), int(cap_bytes)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Condition()
        self.dropped = 0  # records refused because the spool was full (since this start)
        segments = sorted(int(p.stem) for p in self.folder.glob("*.jsonl") if p.stem.isdigit())
        cursor = self.folder / CURSOR
        seg, offset = (int(v) for v in cursor.read_text().split()) if cursor.exists() else (segments[0] if segments else 1, 0)
        for n in segments:
            if n < seg:  # read to its end before the last stop
                (self.folder / segment_name(n)).unlink()
        self._read = [seg, offset]  # the oldest record not acknowledged: segment, byte offset
        self._write_seg = max([seg, *segments])
        last = self.folder / segment_name(self._write_seg)
        if last.exists() and (data := last.read_bytes()) and not data.endswith(b"\n"):  # a write cut short by a crash
            os.truncate(last, data.rfind(b"\n") + 1)
        self._writer = open(last, "ab")
        self.pending, self.pending_bytes = 0, 0
        for n in range(seg, self._write_seg + 1):
            path = self.folder / segment_name(n)
            if path.exists():
                data = path.read_bytes()[offset if n == seg else 0:]
                self.pending += data.count(b"\n")
                self.pending_bytes += len(data)

    def put(self, record: str) -> bool:
        """Append ``record``; False (and ``dropped`` counted) when the spool is full."""
        data = record.encode() + b"\n"
        with self._lock:
            if self.pending_bytes + len(data) > self.cap:
                self.dropped += 1
                return False
            if self._writer.tell() >= SEGMENT_BYTES:
                self._writer.close()
                self._write_seg += 1
                self._writer = open(self.folder / segment_name(self._write_seg), "ab")
            self._writer.write(data)
            self._writer.flush()
            self.pending += 1
            self.pending_bytes += len(data)
            self._lock.notify_all()
        return True

    def next(self, timeout: float) -> tuple[tuple[int, int], str] | None:
        """(its position for ``ack``, the oldest record not acknowledged), or None after ``timeout`` s with none."""
        with self._lock:
            if not self._lock.wait_for(lambda: self.pending > 0, timeout):
                return None
            while True:
                seg, offset = self._read
                with open(self.folder / segment_name(seg), "rb") as f:
                    f.seek(offset)
                    line = f.readline()
                if line.endswith(b"\n"):
                    return (seg, offset + len(line)), line[:-1].decode()
                if seg >= self._write_seg:
                    raise RuntimeError(f"spool '{self.folder}': {self.pending} record(s) counted but none found")
                self._advance((seg + 1, 0))  # the end of a segment that the writer has left: go on in the next one

    def ack(self, position: tuple[int, int]) -> None:
        """The record ``next`` gave at ``position`` was delivered: move past it, for good."""
        with self._lock:
            seg, offset = self._read
            size = position[1] - offset if position[0] == seg else position[1]
            self.pending -= 1
            self.pending_bytes -= size
            self._advance(position)

    def _advance(self, position: tuple[int, int]) -> None:
        old = self._read[0]
        self._read = list(position)
        tmp = self.folder / (CURSOR + ".tmp")
        tmp.write_text(f"{position[0]} {position[1]}\n")
        os.replace(tmp, self.folder / CURSOR)
        for n in range(old, position[0]):
            (self.folder / segment_name(n)).unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            self._writer.close()
