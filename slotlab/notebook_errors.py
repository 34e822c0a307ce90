"""Show a ``SlotlabError`` raised in a notebook cell as its one-line message, without the traceback wall.

Every ``SlotlabError`` (and its subclasses ``DataError``, ``DiskError``, ...) is bad input or a damaged file that the
user can fix, and its message already says what is wrong and what to do (``slotlab.errors``). The command line
prints that message alone; IPython, left to itself, prints the same line at the end of a screen of frames from
inside slotlab, torch and the DataLoader, so the one line that matters is the one a user scrolls past.

``install()`` registers an IPython custom exception handler (``InteractiveShell.set_custom_exc``) for
``SlotlabError`` that prints ``<ErrorClass>: <message>`` to stderr: one line, no traceback. The cell still fails
(a "run all" stops there, and nbclient/nbmake see the error). Every other exception keeps IPython's usual
traceback, since those are bugs, and their frames are what a bug report needs.

The traceback of a ``SlotlabError`` is not lost: the handler records it as the last exception, as IPython does,
so ``%tb`` prints it and ``%debug`` opens it; with the environment variable ``SLOTLAB_DEBUG=1`` (read when the
error happens, so ``os.environ["SLOTLAB_DEBUG"] = "1"`` in a cell is enough) the handler hands the error back to
IPython's normal ``shell.showtraceback``.

``slotlab.notebooks`` calls ``install()`` when it is imported. IPython is optional: outside IPython, or without
it installed, ``install()`` does nothing and returns False.
"""

from __future__ import annotations

import os
import sys

from slotlab.errors import SlotlabError

DEBUG_VARIABLE = "SLOTLAB_DEBUG"


def _show_message(shell, etype, value, tb, tb_offset=None):
    """IPython custom exception handler (called as a method of the shell): the one-line message only."""
    sys.last_type, sys.last_value, sys.last_traceback = etype, value, tb  # for %tb and %debug
    if sys.version_info >= (3, 12):
        sys.last_exc = value
    if os.environ.get(DEBUG_VARIABLE) == "1":
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
        return None
    sys.stdout.flush()  # the message after what the cell printed before it failed
    print(f"{etype.__name__}: {value}", file=sys.stderr, flush=True)
    return None


def install(shell=None) -> bool:
    """Make ``shell`` (by default the running IPython, if any) show a ``SlotlabError`` as its message alone.

    Returns True when the handler is installed; False outside IPython, when IPython is not installed, or when
    the shell already has another custom exception handler (IPython keeps only one, and that one is left alone).
    Installing twice is harmless.
    """
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        shell = get_ipython()
        if shell is None:
            return False
    if tuple(getattr(shell, "custom_exceptions", ())) not in ((), (SlotlabError,)):
        return False
    shell.set_custom_exc((SlotlabError,), _show_message)
    return True
