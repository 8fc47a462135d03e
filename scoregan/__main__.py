"""``python -m scoregan``: the command line (:mod:`scoregan.cli`)."""

import sys

from scoregan.cli import main

sys.exit(main())
