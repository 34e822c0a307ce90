"""``python -m slotlab``: see ``slotlab.cli``."""

import sys

from slotlab.cli import main

sys.exit(main())
