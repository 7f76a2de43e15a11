"""Capturing each actor's stdout and stderr into per-actor files, size-capped and rotated.

The daemon creates a pipe pair per actor; the child writes, the daemon reads
on its loop, tags every line with the actor's name, pid and stream, writes it
to ``<state_dir>/logs/<name>.log`` (rotated at ``log_max_bytes``) and, under
systemd (or when asked), echoes it to its own stderr so it reaches the journal.
The last lines are kept in memory for the actor's exit record.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from collections import deque
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
READ_CHUNK = 1 << 16
MAX_LINE = 16 * 1024  # longer lines are split


class ActorLogFile:
    """One actor's log file, rotated by size."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._fh = open(path, "a", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115

    def write(self, text: str) -> None:
        size = self._fh.tell()
        if size and size + len(text) > self.max_bytes:
            self._rotate()
        self._fh.write(text)
        self._fh.flush()

    def _rotate(self) -> None:
        self._fh.close()
        for i in range(self.backups - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                src.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.backups > 0:
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115

    def close(self) -> None:
        self._fh.close()


class _Stream:
    """One pipe being read: its fd and the partial line not yet ended."""

    __slots__ = ("fd", "name", "partial")

    def __init__(self, fd: int, name: str) -> None:
        self.fd = fd
        self.name = name
        self.partial = b""


class ActorOutput:
    """The capture of one actor incarnation: two pipes into one log file and a tail."""

    def __init__(self, collector: LogCollector, label: str, pid_ref: list, tail: deque, logfile: ActorLogFile) -> None:
        self.collector = collector
        self.label = label
        self.pid_ref = pid_ref  # [pid]: known only after the fork
        self.tail = tail
        self.logfile = logfile
        self.streams: list[_Stream] = []

    def add(self, fd: int, name: str) -> None:
        os.set_blocking(fd, False)
        stream = _Stream(fd, name)
        self.streams.append(stream)
        self.collector.loop.add_reader(fd, self._on_readable, stream)

    def _on_readable(self, stream: _Stream) -> None:
        self._read(stream, once=True)

    def _read(self, stream: _Stream, once: bool) -> None:
        while True:
            try:
                data = os.read(stream.fd, READ_CHUNK)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._close(stream)
                return
            self._lines(stream, data)
            if once:
                return

    def _lines(self, stream: _Stream, data: bytes) -> None:
        data = stream.partial + data
        lines = data.split(b"\n")
        stream.partial = lines.pop()
        if len(stream.partial) > MAX_LINE:
            lines.append(stream.partial)
            stream.partial = b""
        for raw in lines:
            self._emit(stream.name, raw)

    def _emit(self, stream: str, raw: bytes) -> None:
        text = raw.decode("utf-8", "backslashreplace").rstrip("\r")
        pid = self.pid_ref[0]
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())
        line = f"{stamp} {self.label}[{pid}] {stream}: {text}"
        self.tail.append(line)
        self.logfile.write(line + "\n")
        if self.collector.echo:
            print(f"{self.label}[{pid}] {stream}: {text}", file=sys.stderr, flush=True)

    def _close(self, stream: _Stream) -> None:
        if stream.partial:
            self._emit(stream.name, stream.partial)
            stream.partial = b""
        if stream in self.streams:
            self.collector.loop.remove_reader(stream.fd)
            os.close(stream.fd)
            self.streams.remove(stream)
            if not self.streams:  # both pipes at EOF: nobody can write to this capture again
                self.collector.release(self.label)

    def drain(self) -> None:
        """Read what the (exited) actor left in its pipes, so the exit record has its last lines."""
        for stream in list(self.streams):
            self._read(stream, once=False)

    def close(self) -> None:
        for stream in list(self.streams):
            self._close(stream)


class LogCollector:
    """Creates the capture pipes and log files for actors."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        state_dir: Path,
        *,
        max_bytes: int,
        backups: int,
        echo: bool,
    ) -> None:
        self.loop = loop
        self.dir = state_dir / "logs"
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.max_bytes = max_bytes
        self.backups = backups
        self.echo = echo
        self._files: dict[str, ActorLogFile] = {}
        self._users: dict[str, int] = {}  # captures still open per file: closed at zero

    def path_for(self, label: str) -> Path:
        return self.dir / (_UNSAFE.sub("_", label)[:100] + ".log")

    def _file(self, label: str) -> ActorLogFile:
        fh = self._files.get(label)
        if fh is None:
            fh = self._files[label] = ActorLogFile(self.path_for(label), self.max_bytes, self.backups)
        self._users[label] = self._users.get(label, 0) + 1
        return fh

    def release(self, label: str) -> None:
        """A capture of ``label`` ended: close its file once no incarnation writes to it
        (a daemon that outlives thousands of actors must not keep a descriptor for each)."""
        left = self._users.get(label, 0) - 1
        if left > 0:
            self._users[label] = left
            return
        self._users.pop(label, None)
        fh = self._files.pop(label, None)
        if fh is not None:
            fh.close()

    def forget(self, label: str) -> None:
        """Delete ``label``'s log files (and rotated backups) unless an incarnation still writes there."""
        if label in self._users:
            return
        path = self.path_for(label)
        for old in [path, *(path.with_name(f"{path.name}.{i}") for i in range(1, self.backups + 1))]:
            old.unlink(missing_ok=True)

    def capture(self, label: str, pid_ref: list, tail: deque) -> tuple[ActorOutput, list[int]]:
        """Pipes for a new actor: returns the capture and the two write ends to hand to the child."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        output = ActorOutput(self, label, pid_ref, tail, self._file(label))
        output.add(out_r, "out")
        output.add(err_r, "err")
        return output, [out_w, err_w]

    def read(self, label: str, *, lines: int = 100, offset: int | None = None) -> dict:
        """The last ``lines`` lines, or everything after byte ``offset`` (for ``logs -f``)."""
        path = self.path_for(label)
        if not path.exists():
            return {"path": str(path), "lines": [], "offset": 0}
        size = path.stat().st_size
        with open(path, "rb") as fh:
            if offset is not None and 0 <= offset <= size:
                fh.seek(offset)
                data = fh.read(4 * 1024 * 1024)
                new_offset = offset + len(data)
                text = data.decode("utf-8", "backslashreplace").splitlines()
            else:
                fh.seek(max(0, size - 2 * 1024 * 1024))
                text = fh.read().decode("utf-8", "backslashreplace").splitlines()[-lines:] if lines else []
                new_offset = size
        return {"path": str(path), "lines": text, "offset": new_offset}

    def close(self) -> None:
        for fh in self._files.values():
            fh.close()
        self._files.clear()
        self._users.clear()
