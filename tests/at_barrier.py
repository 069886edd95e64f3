"""``python tests/at_barrier.py BARRIER <hyperflow command and settings>``: ``hyperflow`` as ``python -m hyperflow``
runs it, started once the file ``BARRIER`` exists (hyperflow imported already), so that processes started one
after the other begin their work together (tests/test_search_lock.py)."""

import os
import sys
import time

from hyperflow.cli import main

while not os.path.exists(sys.argv[1]):
    time.sleep(0.005)
sys.exit(main(sys.argv[2:]))
