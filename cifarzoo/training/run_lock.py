"""One training process per run folder: ``<run>/.lock``, created with ``O_CREAT | O_EXCL`` like git's ``index.lock``.

The lock file holds the holder's pid, host and process start time. A second training on the same folder finds it
and stops with one line naming the folder and the pid. A lock whose process is gone (``kill -9``, a crash, a
reboot) is stale and is taken over with a note. Only rank 0 of a ``torchrun`` job takes the lock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from cifarzoo.errors import CifarzooError
from cifarzoo.io.layout import LOCK_NAME

log = logging.getLogger(__name__)

# A lock file still empty after this long was left by a process killed between creating and writing it.
_UNWRITTEN_GRACE_S = 10.0


class RunLockedError(CifarzooError):
    """Another training process holds the run folder's lock."""


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux ``/proc``), or ``None`` where unknown. A pid and
    its start time name one process; the pid alone may be reused by an unrelated one after the holder died."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # the command name (field 2) may hold spaces and parentheses
    return fields[19] if len(fields) > 19 else None  # field 22, starttime


@dataclass(frozen=True)
class LockHolder:
    """The process a lock file names."""

    pid: int
    host: str
    started: str | None

    @classmethod
    def current(cls) -> LockHolder:
        return cls(os.getpid(), socket.gethostname(), _process_start(os.getpid()))

    def to_text(self) -> str:
        return json.dumps({"pid": self.pid, "host": self.host, "started": self.started}) + "\n"

    @classmethod
    def parse(cls, text: str) -> LockHolder | None:
        """The holder a lock file's text names, or ``None`` for an empty or garbled file."""
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        pid, host, started = data.get("pid"), data.get("host"), data.get("started")
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or not isinstance(host, str):
            return None
        return cls(pid, host, started if isinstance(started, str) else None)

    def is_running(self) -> bool | None:
        """Whether the holder still runs: ``None`` when that cannot be told from here (another host)."""
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)  # signal 0: only checks that the process exists
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # it exists, owned by another user
        except OSError:
            return None
        started = _process_start(self.pid)
        return not (self.started is not None and started is not None and started != self.started)

    def describe(self) -> str:
        return f"pid {self.pid}" + ("" if self.host == socket.gethostname() else f" on host {self.host}")


class RunLock:
    """The lock on ``run_dir``, as a context manager: taken on entry (creating the folder if needed), removed on
    every exit, normal or not. A folder the lock created is removed too if the run left nothing in it."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.holder = LockHolder.current()
        self.held = False
        self._created_dir = False

    def acquire(self) -> None:
        """Take the lock; :class:`RunLockedError` if a running process holds it. OS errors (a read-only or full
        disk) propagate for the caller to word."""
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise CifarzooError(f"{self.run_dir}: exists and is not a folder")
        self._created_dir = not self.run_dir.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._create()
        except BaseException:
            self._remove_created_dir()
            raise

    def _create(self) -> None:
        for _ in range(10):  # each retry follows a stale lock taken over, or one released meanwhile
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(self.holder.to_text())
            self.held = True
            return
        raise RunLockedError(f"{self.run_dir}: could not take {self.path}: other processes keep taking it")

    def _take_over_if_stale(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return  # released meanwhile: try again
        except (OSError, UnicodeDecodeError):
            text, age = "", _UNWRITTEN_GRACE_S
        holder = LockHolder.parse(text)
        if holder is None and age < _UNWRITTEN_GRACE_S:
            raise RunLockedError(
                f"{self.run_dir}: another training is starting in this folder ({self.path} is being written)"
            )
        if holder is not None and holder.is_running() is not False:
            raise RunLockedError(
                f"{self.run_dir}: another training ({holder.describe()}) is using this run folder; wait for it to "
                f"finish, or delete {self.path} if that process is gone"
            )
        # Stale. Move it aside before deleting it: of two processes taking it over at once, the second then moves
        # the first one's new, live lock, sees that it is not the stale file it judged, and puts it back.
        aside = self.run_dir / f".{LOCK_NAME}.{os.getpid()}.tmp"
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return
        try:
            try:
                moved = aside.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                moved = ""
            if moved != text:
                try:
                    os.link(aside, self.path)
                except FileExistsError:
                    pass
                except OSError:  # no hard links on this file system
                    if not self.path.exists():
                        os.replace(aside, self.path)
                return
        finally:
            aside.unlink(missing_ok=True)
        what = holder.describe() if holder is not None else "a process killed while taking it"
        log.warning("note: %s: took over a stale lock left by %s, which is no longer running", self.run_dir, what)

    def release(self) -> None:
        """Remove the lock if it is still this process's."""
        if not self.held:
            return
        self.held = False
        with contextlib.suppress(OSError, UnicodeDecodeError):
            if LockHolder.parse(self.path.read_text(encoding="utf-8")) == self.holder:
                self.path.unlink()
        self._remove_created_dir()

    def _remove_created_dir(self) -> None:
        if self._created_dir:
            with contextlib.suppress(OSError):
                self.run_dir.rmdir()  # only succeeds while empty: a run that wrote nothing leaves no folder

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
