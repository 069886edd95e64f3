"""MLproject entry point `promote`: a thin wrapper over `hyperflow promote` (see `hyperflow promote --help`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # works without `pip install -e .` too

from hyperflow.cli import main

COMMAND = "promote"  # what the arguments mean: tests/test_entrypoints_mlproject.py runs them through it

if __name__ == "__main__":
    sys.exit(main([COMMAND, *sys.argv[1:]], from_mlproject=True))
