"""``python -m rltasks.trial TASK|agent [options]``: one trial (what ``--seeds`` starts)."""

import sys

from rltasks.trial.run import main

sys.exit(main(sys.argv[1], sys.argv[2:]))
