"""``python tests/machine_command.py PIN CGROUP <hyperflow command and settings>``: ``hyperflow`` as a user runs it,
in a process pinned to the CPUs ``PIN`` names (a Python set literal, or ``None``) and/or reading the faked cgroup
folder ``CGROUP`` (a path, or ``None``); it prints what it makes of the machine first (tests/test_machine.py)."""

import ast
import os
import sys
from pathlib import Path

from hyperflow import machine
from hyperflow.cli import main

pin, cgroup = ast.literal_eval(sys.argv[1]), None if sys.argv[2] == "None" else sys.argv[2]
if pin:
    os.sched_setaffinity(0, pin)
if cgroup:
    machine.CGROUP_ROOT, machine.SELF_CGROUP = Path(cgroup), Path(cgroup, "no-such-file")
print("cpus", machine.cpus(), "threads", machine.threads_per_trial(1), flush=True)
sys.exit(main(sys.argv[3:]))
