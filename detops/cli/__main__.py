"""``python -m detops.cli ...``: the console script as a module (what ``torchrun -m`` needs)."""

import sys

from detops.cli import main

sys.exit(main())
