"""The one error type slotlab raises for bad input.

Every message is a single line that says what is wrong and what to do about it, so that the command line can
print it as it is and a notebook shows it without a traceback wall.
"""


class SlotlabError(ValueError):
    """Bad input to slotlab: the message says what is wrong and how to fix it."""
