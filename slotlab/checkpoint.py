"""Atomic writes and safe loads: nothing half-written is ever left where a reader would take it for whole."""

from __future__ import annotations

import errno
import functools
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from slotlab.errors import RunFileError, SlotlabError, disk_error

TEMPORARY_GLOB = ".*.tmp"  # what ``_atomic`` names its temporaries: .<name>.<random>.tmp


@functools.cache
def _file_mode() -> int:
    """0666 less the process's umask: what ``open`` would give (``mkstemp`` gives 0600 whatever the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _atomic(path: Path, write) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise disk_error(error, path.parent) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), _file_mode())  # others on a shared machine may read the runs
            write(handle)
        # atomic on POSIX: a reader, or a run resumed after a kill, sees the old file or the new one, never a
        # part. (No fsync: it protects against power loss only, and costs seconds per epoch on slow disks.)
        os.replace(tmp, path)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        raise disk_error(error, path) from None
    except (
        RuntimeError
    ) as error:  # torch.save reports a failed write as "PytorchStreamWriter failed writing..."
        Path(tmp).unlink(missing_ok=True)
        if "writ" not in str(error).lower():
            raise
        raise disk_error(_write_failure(path.parent), path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_failure(folder: Path) -> OSError:
    """The likely cause of a write that torch reported without one: a full disk, else an I/O error."""
    try:
        stats = os.statvfs(folder)
        full = stats.f_bavail * stats.f_frsize < 1 << 20
    except OSError:
        full = False
    code = errno.ENOSPC if full else errno.EIO
    return OSError(code, os.strerror(code))


def remove_temporaries(folder: Path) -> list[Path]:
    """Delete the temporaries a write killed half-way left in ``folder`` (call only while owning the folder)."""
    removed = []
    for leftover in Path(folder).glob(TEMPORARY_GLOB):
        leftover.unlink(missing_ok=True)
        removed.append(leftover)
    return removed


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    _atomic(path, lambda handle: torch.save(obj, handle))


def atomic_write_bytes(data: bytes, path: Path) -> None:
    _atomic(path, lambda handle: handle.write(data))


def atomic_write_text(text: str, path: Path) -> None:
    atomic_write_bytes(text.encode(), path)


def atomic_write_json(obj: Any, path: Path) -> None:
    atomic_write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", path)


def safe_load(path: Path, map_location: str | torch.device = "cpu", advice: str = "") -> Any:
    """Load a slotlab file with ``weights_only=True`` (no pickled code runs), with a one-line error.

    ``advice`` says what to do when the file is damaged (the run folder knows: a damaged last.pt is deleted and
    the run trains again from its start)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise SlotlabError(f"no file at {path}; check the run folder or train the run first") from None
    except Exception as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise RunFileError(
            f"{path} is not a readable slotlab checkpoint ({type(error).__name__}: {reason})"
            + (f"; {advice}" if advice else "")
        ) from None
