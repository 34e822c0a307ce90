"""The errors slotlab raises for what a user can cause or meet, each a failure class with its own exit code.

Every message is a single line that says what is wrong and what to do about it, so that the command line can
print it as it is and a notebook shows it without a traceback wall (``slotlab.notebook_errors``).

| class         | exit code | what happened                                                                  |
|---------------|-----------|--------------------------------------------------------------------------------|
| SlotlabError  | 2         | bad input: an option, a value, a config, a name                                |
| DataError     | 3         | a dataset file is missing or damaged                                           |
| DiskError     | 4         | a run folder or file cannot be written: read-only, not a folder, disk full     |
| RunFileError  | 5         | a file of a run folder is damaged (truncated checkpoint, JSON, history)        |
| RunLocked     | 6         | another live process is training the same run (``slotlab.locks``)              |
| ResourceError | 7         | the run would not fit in memory                                                |
| (Ctrl-C)      | 130       | interrupted: the run resumes from its last finished epoch                      |
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


class SlotlabError(ValueError):
    """Bad input to slotlab: the message says what is wrong and how to fix it."""

    exit_code = 2


class DataError(SlotlabError):
    """A dataset file is missing or damaged."""

    exit_code = 3


class DiskError(SlotlabError):
    """A file or folder could not be written."""

    exit_code = 4


class RunFileError(SlotlabError):
    """A file of a run folder is damaged."""

    exit_code = 5


class ResourceError(SlotlabError):
    """A run needs more memory than there is."""

    exit_code = 7


INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, as shells report an interrupted command


def disk_error(error: OSError, path: Path | str | None = None) -> DiskError:
    """A one-line ``DiskError`` for an ``OSError`` met while writing ``path``."""
    where = Path(path or error.filename or "?")
    advice = {
        errno.ENOSPC: "free some space or give another runs folder with --runs; a stopped run resumes",
        errno.EDQUOT: "free some space or give another runs folder with --runs; a stopped run resumes",
        errno.EACCES: "make it writable or give another runs folder with --runs",
        errno.EPERM: "make it writable or give another runs folder with --runs",
        errno.EROFS: "it is on a read-only filesystem: give another runs folder with --runs",
        errno.ENOTDIR: "a file stands where a folder must be: move it or give another runs folder with --runs",
        errno.EEXIST: "a file stands where a folder must be: move it or give another runs folder with --runs",
    }.get(error.errno or 0, "check the folder, or give another runs folder with --runs")
    reason = error.strerror or os.strerror(error.errno or 0) or type(error).__name__
    return DiskError(f"cannot write {where}: {reason}; {advice}")
