"""`python -m watchdog` runs the command line."""

import sys

from watchdog.cli import main

sys.exit(main())
