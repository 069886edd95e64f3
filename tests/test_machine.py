"""The machine is what the process may use: the CPUs of its affinity mask and cgroup quota, the memory its
cgroup leaves, one trial per GPU. Searches run in subprocesses pinned with ``os.sched_setaffinity`` or pointed
at a faked cgroup folder; the rules themselves are pure functions checked with given numbers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import forked
import pytest

from hyperflow import machine
from hyperflow.config.search import build_search_config, trials_at_once
from hyperflow.core.loading import load_dataset

MiB, GiB = 2**20, 2**30
TESTS = str(Path(__file__).parent)


def files(folder: Path, **content: str) -> Path:
    """A faked cgroup folder: ``name=content`` per file (``__`` in a name is a folder separator)."""
    for name, text in content.items():
        path = folder.joinpath(*name.split("__"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder


def search(
    tmp_path: Path, experiment: str, *settings: str, pin: set[int] | None = None, cgroup: Path | None = None
) -> tuple[subprocess.CompletedProcess, list[int]]:
    """``hyperflow search`` (2 one-epoch trials of a model that records its torch threads) in a subprocess;
    its output and the thread counts of every model it built."""
    probes = tmp_path / "probes"
    probes.mkdir()
    (tmp_path / "space.yaml").write_text("lr: {type: loguniform, low: 1.0e-3, high: 1.0e-2}\n")
    (tmp_path / "config.yaml").write_text(f"model: thread_probe:build\nmodel_kwargs: {{out: {probes}}}\n")
    args = [
        "search",
        "data=digits",
        "epochs=1",
        "max_evals=2",
        "pruner=none",
        "seed_presets=false",
        "register=false",
        "progress=false",
        f"experiment={experiment}",
        f"space={tmp_path / 'space.yaml'}",
        f"config={tmp_path / 'config.yaml'}",
        *settings,
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, f"{TESTS}/machine_command.py", repr(pin), str(cgroup), *args]
    proc = forked.run(command, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc, [int(p.read_text()) for p in probes.iterdir()]


def summary(proc: subprocess.CompletedProcess) -> str:
    return next(line for line in proc.stdout.splitlines() if line.startswith("hyperflow search: "))


# ------------------------------------------------------------------------------------- through a search
@pytest.mark.integration
@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is a Linux call")
def test_a_process_pinned_to_one_cpu_runs_one_trial_at_a_time_with_one_thread(tmp_path, experiment):
    """Before, parallelism=auto counted the host's CPUs (os.cpu_count) whatever the process was pinned to."""
    proc, threads = search(tmp_path, experiment, "threads=0", pin={0})
    assert proc.stdout.startswith("cpus 1 threads 1\n")
    assert "; 1 at once)" in summary(proc), proc.stdout
    assert len(threads) >= 2 and set(threads) == {1}  # each trial's model (and the space check's, the best's)


@pytest.mark.integration
def test_a_cgroup_quota_of_one_cpu_gives_one_trial_and_torch_one_thread(tmp_path, experiment):
    """cpu.max of 1 CPU: auto is 1 trial, and threads=0 (torch's default, which counts the host's cores) is
    capped at 1. Before, the search ran a worker per host core and torch took every core."""
    cgroup = files(tmp_path / "cgroup", **{"cpu.max": "100000 100000\n"})
    proc, threads = search(tmp_path, experiment, "threads=0", cgroup=cgroup)
    assert proc.stdout.startswith("cpus 1 threads 1\n")
    assert "; 1 at once)" in summary(proc), proc.stdout
    assert len(threads) >= 2 and set(threads) == {1}  # each trial's model (and the space check's, the best's)


@pytest.mark.integration
def test_a_cgroup_memory_limit_caps_the_workers_and_says_so(tmp_path, experiment):
    """memory.max leaves room for one worker (256 MiB + 4 x the data): parallelism=2 runs one trial at a time
    and one line on stderr says why, with the numbers. Before, two workers started whatever the memory."""
    cgroup = files(tmp_path / "cgroup", **{"memory.max": str(300 * MiB), "memory.current": "0"})
    proc, _ = search(tmp_path, experiment, "parallelism=2", cgroup=cgroup)
    assert "; 1 at once)" in summary(proc), proc.stdout
    [line] = [line for line in proc.stderr.splitlines() if "at once" in line]
    assert re.fullmatch(
        r"hyperflow search: 1 trial at once, not 2: each worker needs about 2\d\d MiB \(256 MiB \+ "
        r"4 x the data's \d MiB in memory\) and this process may take 300 MiB more \(cgroup memory "
        r"limit\)",
        line,
    ), line


# ------------------------------------------------------------------------------------- CPUs
def test_cgroup_v2_cpu_quota_is_rounded_up_and_max_is_no_limit(tmp_path):
    root = files(tmp_path / "a", **{"cpu.max": "150000 100000\n"})
    assert machine.cgroup_cpu_limit(root, tmp_path / "none") == 1.5
    assert machine.cpus(root, tmp_path / "none") == min(2, machine.affinity_cpus())
    files(root, **{"cpu.max": "50000 100000\n"})
    assert machine.cpus(root, tmp_path / "none") == 1
    files(root, **{"cpu.max": "max 100000\n"})
    assert machine.cgroup_cpu_limit(root, tmp_path / "none") is None
    assert machine.cpus(root, tmp_path / "none") == machine.affinity_cpus()
    assert machine.cpus(tmp_path / "no-cgroup-here", tmp_path / "none") == machine.affinity_cpus()


def test_cgroup_v1_cpu_quota_and_minus_one_for_none(tmp_path):
    root = files(tmp_path, **{"cpu,cpuacct__cpu.cfs_quota_us": "50000", "cpu,cpuacct__cpu.cfs_period_us": "100000"})
    assert machine.cgroup_cpu_limit(root, tmp_path / "none") == 0.5
    assert machine.cpus(root, tmp_path / "none") == 1
    files(root, **{"cpu,cpuacct__cpu.cfs_quota_us": "-1"})
    assert machine.cgroup_cpu_limit(root, tmp_path / "none") is None


def test_the_tightest_quota_of_the_process_cgroup_and_its_parents_wins(tmp_path):
    """/proc/self/cgroup names the process's own cgroup: a parent's quota binds it too (v2 and v1)."""
    root = files(
        tmp_path / "fs",
        **{
            "job__cpu.max": "100000 100000",
            "job__step__cpu.max": "max 100000",
            "cpu__job__cpu.cfs_quota_us": "300000",
            "cpu__job__cpu.cfs_period_us": "100000",
        },
    )
    self_cgroup = files(tmp_path, **{"self": "4:cpu,cpuacct:/job\n0::/job/step\n"}) / "self"
    assert machine.cgroup_cpu_limit(root, self_cgroup) == 1.0
    assert machine.cpus(root, self_cgroup) == 1
    assert machine.threads_per_trial(1, 1) == 1 and machine.threads_per_trial(2, 8) == 4


# ------------------------------------------------------------------------------------- memory
def test_available_memory_is_the_cgroup_limit_less_its_usage_else_memavailable(tmp_path):
    meminfo = files(tmp_path, meminfo="MemTotal:       16000000 kB\nMemAvailable:    8388608 kB\n") / "meminfo"
    none = tmp_path / "none"
    v2 = files(
        tmp_path / "v2",
        **{
            "memory.max": str(GiB),
            "memory.current": str(400 * MiB),
            "memory.stat": f"anon 1\ninactive_file {100 * MiB}\n",
        },
    )
    # 1 GiB less 400 MiB used, of which 100 MiB inactive file cache the kernel reclaims first
    assert machine.available_memory(v2, none, meminfo) == (724 * MiB, "cgroup memory limit")
    files(v2, **{"memory.max": "max"})
    assert machine.available_memory(v2, none, meminfo) == (8 * GiB, "available memory")
    v1 = files(
        tmp_path / "v1",
        **{"memory__memory.limit_in_bytes": "9223372036854771712", "memory__memory.usage_in_bytes": str(GiB)},
    )
    assert machine.available_memory(v1, none, meminfo) == (8 * GiB, "available memory")
    files(v1, **{"memory__memory.limit_in_bytes": str(2 * GiB)})
    assert machine.available_memory(v1, none, meminfo) == (GiB, "cgroup memory limit")
    assert machine.available_memory(tmp_path / "x", none, none) == (None, "")


def test_memory_caps_the_workers_with_given_numbers():
    """Each worker: 256 MiB + 4 x the data. 3 GiB hold 2 workers for 250 MiB of data, not 16."""
    n, line = machine.memory_cap(16, 3 * GiB, 250 * MiB, "cgroup memory limit")
    assert n == 2 and line == (
        "2 trials at once, not 16: each worker needs about 1.2 GiB (256 MiB + 4 x the "
        "data's 250 MiB in memory) and this process may take 3.0 GiB more (cgroup memory limit)"
    )
    assert machine.memory_cap(16, 64 * GiB, 250 * MiB) == (16, "")
    assert machine.memory_cap(8, 10 * MiB, 250 * MiB)[0] == 1  # never fewer than one trial
    assert machine.memory_cap(1, 10 * MiB, 250 * MiB) == (1, "")  # one trial needs no worker
    assert machine.memory_cap(4, None, 250 * MiB) == (4, "")  # nothing known: no cap


def test_a_dataset_counts_its_tensors_and_its_raw_data():
    dataset = load_dataset("digits")
    raw = int(dataset.raw_all.memory_usage(deep=True).sum())
    assert dataset.X_train.nbytes + raw < dataset.memory_bytes < 4 * MiB


# ------------------------------------------------------------------------------------- GPU
def test_on_a_gpu_auto_is_one_trial_per_gpu_unless_parallelism_is_set():
    assert machine.auto_trials(64, gpus=1) == 1
    assert machine.auto_trials(64, gpus=2) == 2
    assert machine.auto_trials(2) == 2
    assert trials_at_once(build_search_config({}), cores=64, gpus=1) == 1
    assert trials_at_once(build_search_config({"parallelism": "3"}), cores=64, gpus=1) == 3
    assert trials_at_once(build_search_config({}), cores=64) == 30  # max_evals
