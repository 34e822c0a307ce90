"""Atomic writes and safe loads: nothing half-written is ever left where a reader would take it for whole."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from slotlab.errors import SlotlabError


def _atomic(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        # atomic on POSIX: a reader, or a run resumed after a kill, sees the old file or the new one, never a
        # part. (No fsync: it protects against power loss only, and costs seconds per epoch on slow disks.)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    _atomic(path, lambda handle: torch.save(obj, handle))


def atomic_write_bytes(data: bytes, path: Path) -> None:
    _atomic(path, lambda handle: handle.write(data))


def atomic_write_text(text: str, path: Path) -> None:
    atomic_write_bytes(text.encode(), path)


def atomic_write_json(obj: Any, path: Path) -> None:
    atomic_write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", path)


def safe_load(path: Path, map_location: str | torch.device = "cpu") -> Any:
    """Load a slotlab file with ``weights_only=True`` (no pickled code runs), with a one-line error."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise SlotlabError(f"no file at {path}; check the run folder or train the run first") from None
    except Exception as error:
        raise SlotlabError(
            f"{path} is not a readable slotlab checkpoint ({type(error).__name__}: {error})"
        ) from None
