"""What this process may use of the machine: the CPUs it may run on, the memory it may still take, and so how
many trials fit at once. ``os.cpu_count()`` counts the host's CPUs, not those of a container limited to 2 of a
64-core host: the search, its workers' torch threads and the Spark backend are sized from here instead.

Standard library only, so every layer may use it. The cgroup files are read under ``root`` (default
``CGROUP_ROOT``, the real mount; a test points it at a folder of its own), in the process's own cgroup (named
in ``SELF_CGROUP``) and each parent up to the mount, the smallest limit winning: cgroup v2 (``cpu.max``,
``memory.max``) and v1 (``cpu.cfs_quota_us`` with ``cpu.cfs_period_us``, ``memory.limit_in_bytes``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")
MEMINFO = Path("/proc/meminfo")
NO_LIMIT = 2**60  # cgroup v1 writes "no memory limit" as a number near 2**63
# A trial worker's own memory (USS: what one more worker adds; torch and MLflow pages stay shared with the fork
# server it is forked from), measured after two digits trials: 187-203 MiB (torch 2.13 CPU, Python 3.11); with
# room for a larger model and its optimizer state
WORKER_OVERHEAD = 256 * 2**20
# ...plus the data: its frame and tensors as loaded (Dataset.memory_bytes) times this. Measured: a 100,000 x 50
# CSV (59 MiB in memory) added 197 MiB to a worker (3.4x): the parsed file, the tensors, the scaled copies
DATA_COPIES = 4


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def cgroup_dirs(controller: str, root: Path | None = None, self_cgroup: Path | None = None) -> list[Path]:
    """The cgroup folders whose ``controller`` (cpu, memory) limits bind this process, innermost first: its own
    cgroup (from ``self_cgroup``) and each parent up to the mount, in the v2 hierarchy at ``root`` and in the v1
    one at ``root/<controller>`` (or a folder naming it with others, e.g. ``cpu,cpuacct``)."""
    root = root or CGROUP_ROOT
    own: dict[str, str] = {}  # hierarchy ("" = v2, else v1 controllers) -> this process's cgroup path
    for line in (_read(self_cgroup or SELF_CGROUP) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            own[parts[1]] = parts[2]
    mounts = [(root, own.get("", "/"))]
    v1 = next((path for key, path in own.items() if controller in key.split(",")), "/")
    try:
        mounts += [(root / name, v1) for name in sorted(os.listdir(root)) if controller in name.split(",")]
    except OSError:  # no cgroup file system (not Linux), or not readable
        pass
    found: list[Path] = []
    for mount, path in mounts:
        inner = mount / path.strip("/")
        for folder in [inner, *inner.parents]:
            if folder.is_dir() and folder not in found:
                found.append(folder)
            if folder == mount:
                break
    return found


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None  # "max" (v2) or a malformed file: no limit
    return q / p if q > 0 and p > 0 else None  # v1 writes -1 for no limit


def cgroup_cpu_limit(root: Path | None = None, self_cgroup: Path | None = None) -> float | None:
    """The CPU quota of this process's cgroups in CPUs (1.5 = 150 ms of CPU time per 100 ms), None if none."""
    limits = []
    for folder in cgroup_dirs("cpu", root, self_cgroup):
        v2 = (_read(folder / "cpu.max") or "").split()
        v1 = [_read(folder / "cpu.cfs_quota_us") or "", _read(folder / "cpu.cfs_period_us") or ""]
        limits += [r for r in (_ratio(*v2[:2]) if len(v2) >= 2 else None, _ratio(*v1)) if r is not None]
    return min(limits, default=None)


def affinity_cpus() -> int:
    """The CPUs this process may be scheduled on (its affinity mask), else the host's."""
    counted = getattr(os, "process_cpu_count", None)  # Python 3.13+
    if counted is not None:
        return counted() or 1
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # macOS, Windows
        return os.cpu_count() or 1


def cpus(root: Path | None = None, self_cgroup: Path | None = None) -> int:
    """The CPUs this process may use: its affinity mask or its cgroup's CPU quota (rounded up), the smaller;
    at least 1. Size every pool of processes and threads from this, never from ``os.cpu_count()``."""
    allowed, limit = affinity_cpus(), cgroup_cpu_limit(root, self_cgroup)
    return max(1, allowed if limit is None else min(allowed, math.ceil(limit - 1e-9)))


def threads_per_trial(at_once: int, cpu_count: int | None = None) -> int:
    """Each of ``at_once`` trials' share of the CPUs as torch threads, at least 1."""
    return max(1, (cpu_count or cpus()) // max(1, at_once))


def _stat(text: str | None, key: str) -> int:
    """The number after ``key`` in a ``key value [unit]`` file (memory.stat, /proc/meminfo), 0 if none."""
    for line in (text or "").splitlines():
        words = line.replace(":", " ").split()
        if len(words) >= 2 and words[0] == key and words[1].isdigit():
            return int(words[1])
    return 0


def _byte_count(text: str | None) -> int | None:
    """A cgroup file's count of bytes (``max``, anything else or nothing: None)."""
    return int(text) if text is not None and text.isdigit() else None


def available_memory(
    root: Path | None = None, self_cgroup: Path | None = None, meminfo: Path | None = None
) -> tuple[int | None, str]:
    """The bytes this process may still take and what sets it: the host's MemAvailable, or less where a cgroup
    memory limit leaves less (its limit less its usage, the inactive file cache counted free as the kernel
    reclaims it first). ``(None, "")`` when nothing can be read (not Linux)."""
    host = _stat(_read(meminfo or MEMINFO), "MemAvailable") * 1024
    known = [(host, "available memory")] if host > 0 else []
    for folder in cgroup_dirs("memory", root, self_cgroup):
        for limit_file, usage_file, inactive in (
            ("memory.max", "memory.current", "inactive_file"),
            ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"),
        ):
            limit = _byte_count(_read(folder / limit_file))
            if limit is None or limit >= NO_LIMIT:
                continue
            used = (_byte_count(_read(folder / usage_file)) or 0) - _stat(_read(folder / "memory.stat"), inactive)
            known.append((max(0, limit - max(0, used)), "cgroup memory limit"))
    return min(known, key=lambda k: k[0], default=(None, ""))


def auto_trials(cpu_count: int, gpus: int = 0) -> int:
    """``parallelism=auto``: one trial per CPU this process may use; on GPUs, one trial per GPU the trials
    train on (trials on one GPU take turns on it, and each worker holds its own CUDA context and a copy of the
    data there): more only when the user sets ``parallelism``."""
    return max(1, gpus if gpus > 0 else cpu_count)


def memory_cap(
    at_once: int,
    available: int | None,
    data_bytes: int,
    source: str = "available memory",
    overhead: int = WORKER_OVERHEAD,
) -> tuple[int, str]:
    """At most as many workers as ``available`` bytes hold, each ``overhead`` plus ``DATA_COPIES`` times the
    data; and the line that says so when that caps ``at_once`` ("" when it does not). One trial at a time
    needs no worker (it trains in the search's own process), so the cap never goes below 1."""
    if at_once <= 1 or available is None:
        return at_once, ""
    each = overhead + DATA_COPIES * data_bytes
    fits = max(1, available // each)
    if fits >= at_once:
        return at_once, ""
    return fits, (
        f"{fits} trial{'s' if fits > 1 else ''} at once, not {at_once}: each worker needs about "
        f"{_size(each)} ({_size(overhead)} + {DATA_COPIES} x the data's {_size(data_bytes)} in memory) "
        f"and this process may take {_size(available)} more ({source})"
    )


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"
