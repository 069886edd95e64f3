"""`python -m hyperflow`: the command line (as the `hyperflow` script)."""

import sys

from hyperflow.cli import main

sys.exit(main())
