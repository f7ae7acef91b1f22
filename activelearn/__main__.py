"""`python -m activelearn` runs the command-line interface."""

import sys

from activelearn.cli import main

sys.exit(main())
