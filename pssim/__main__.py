"""`python -m pssim` runs the pssim command line."""

import sys

from .cli import main

sys.exit(main())
