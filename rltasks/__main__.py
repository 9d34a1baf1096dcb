"""``python -m rltasks`` is the ``rltasks`` command."""

import sys

from rltasks.commands.cli import console

sys.exit(console())
