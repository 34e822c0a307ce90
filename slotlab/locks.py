"""Run locks: a run folder being written is claimed by a lock file that names its owner process.

The lock is ``<run folder>/lock``, created atomically with ``O_CREAT | O_EXCL`` (exactly one creator wins, also
between processes of different sweeps) and holding the owner's host, pid and process start time. A lock whose
owner has died (pid gone, or reused by a younger process) is stale and is taken over. Staleness can only be told
on the owner's own host: a lock written on another host counts as held.

Taking over is the one racy step (two processes may both find the same stale lock), so it happens under a short
second lock, ``lock.break``: its holder re-reads the lock, removes it only if it is still the same stale file, and
then competes for a fresh lock like anyone else.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from slotlab.errors import SlotlabError

LOCK_NAME = "lock"
_BREAK_STALE_SECONDS = 10.0  # a break lock lives microseconds; one older than this belongs to a dead process


class RunLocked(SlotlabError):
    """The run folder is being written by another live process."""

    exit_code = 6


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the parenthesised command name (Linux); None elsewhere or if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid``, which tells a live owner from a later process with its pid."""
    stat = _proc_stat(pid)
    return stat[19] if stat else None  # field 22 of stat


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    stat = _proc_stat(pid)
    return not (stat and stat[0] in ("Z", "X"))  # a zombie has exited; only its parent has not reaped it yet


def owner_record() -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": _start_time(pid), "since": time.time()}


def is_stale(record: dict[str, Any]) -> bool:
    """True when the process named by ``record`` is certainly gone (same host, pid dead or reused), or when the
    record is empty: a lock left unreadable for more than a moment (``read_lock``)."""
    if not record:
        return True
    if record.get("writing") or record.get("host") != socket.gethostname():
        return False
    pid = record.get("pid")
    if not isinstance(pid, int) or not _alive(pid):
        return True
    start = record.get("start")
    return start is not None and _start_time(pid) not in (None, start)


def read_lock(path: Path) -> dict[str, Any] | None:
    """The owner record of lock file ``path``; None if there is none. An unreadable lock is treated as stale."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    try:
        record = json.loads(text)
        return record if isinstance(record, dict) else {}
    except ValueError:
        # a lock is written in one small write right after its creation; an empty one is either being written
        # this instant or was left by a process killed in between: give it a moment before calling it stale
        try:
            age = time.time() - Path(path).stat().st_mtime
        except FileNotFoundError:  # released between the read and now
            return None
        if age < 1.0:
            return {"host": socket.gethostname(), "pid": None, "writing": True}
        return {}


def _create(path: Path, record: dict[str, Any]) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(record))
    return True


class RunLock:
    """The lock of one run folder; use ``acquire``/``release`` or ``with RunLock(folder):``."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.record: dict[str, Any] | None = None

    def acquire(self) -> RunLock:
        """Claim the folder; raise ``RunLocked`` (one line: who holds it) if a live process does."""
        self.folder.mkdir(parents=True, exist_ok=True)
        record = owner_record()
        for _ in range(3):  # create; else take over a stale lock and try again
            if _create(self.path, record):
                self.record = record
                return self
            holder = read_lock(self.path)
            if holder is None:
                continue  # released between our two calls
            if not is_stale(holder):
                raise RunLocked(
                    f"run {self.folder.name} is being written by pid {holder.get('pid')} on "
                    f"{holder.get('host')} (lock {self.path}); wait for it, or delete the lock if that process "
                    f"is gone"
                )
            self._remove_if_still(holder)
        raise RunLocked(
            f"run {self.folder.name}: could not claim {self.path}; another process keeps taking it"
        )

    def _remove_if_still(self, stale: dict[str, Any]) -> None:
        """Remove the lock only if it still holds ``stale``, under the break lock."""
        breaker = self.folder / f"{LOCK_NAME}.break"
        if not _create(breaker, owner_record()):
            try:
                if time.time() - breaker.stat().st_mtime > _BREAK_STALE_SECONDS:
                    breaker.unlink(missing_ok=True)
            except FileNotFoundError:
                pass
            time.sleep(0.05)
            return
        try:
            if read_lock(self.path) == stale:
                self.path.unlink(missing_ok=True)
        finally:
            breaker.unlink(missing_ok=True)

    def release(self) -> None:
        """Remove the lock if it is still ours (a lock taken over from us is left to its new owner)."""
        if self.record is not None and read_lock(self.path) == self.record:
            self.path.unlink(missing_ok=True)
        self.record = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
