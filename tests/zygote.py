"""A warm template of ``python -m hyperflow`` for the tests (started by :mod:`forked`, one per test process).

It imports what a command imports (torch, MLflow, pandas, scikit-learn, hyperflow's workflows: ~3 s of CPU
that every fresh ``python -m hyperflow`` spends again), then forks one child per command it is sent. A child
is a process of its own, with the pid, environment, working directory, standard streams, signal dispositions,
random seeds and ``sys.path`` a fresh ``python -m hyperflow`` would have; it runs ``hyperflow.__main__`` and
exits as that would (``sys.exit`` through the interpreter's own shutdown: every atexit handler runs). The
template reaps its children and writes each one's exit code (``-N``: killed by signal N) to the pipe the
request came with.

Protocol on the SOCK_SEQPACKET socket whose descriptor is ``argv[1]``: a request is one JSON message
``{"script": str | None, "args": [...], "env": {...}, "cwd": str, "new_session": bool}`` (``script``: a
tests' script run as ``python script.py args``, else ``python -m hyperflow args``) with four descriptors: stdin, stdout,
stderr and the write end of the exit-code pipe; the answer is the child's pid, as text.
"""

from __future__ import annotations

import atexit
import fcntl
import gc
import importlib
import json
import os
import runpy
import selectors
import signal
import socket
import struct
import sys
import threading

# What a command imports, in the order a command does; then what it imports when it runs, not when it is imported:
# torch's compiler (a torch optimizer imports it when the first one is made), MLflow's database store, model
# logging and git probe, scikit-learn's built-in datasets and imputer. Measured, a two-trial search forked from the
# template, 3 runs each on the loaded machine: 3.72-3.79 CPU-s with the first seven only, 2.23-2.31 with all.
WARM = [
    "hyperflow.cli.entry",
    "hyperflow.workflows.lr_find",
    "hyperflow.workflows.predict",
    "hyperflow.workflows.promote",
    "hyperflow.workflows.retrain",
    "hyperflow.workflows.search",
    "hyperflow.workflows.train",
    "torch._dynamo",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.pyfunc",
    "git",
    "sklearn.datasets",
    "sklearn.impute",
    "alembic.command",
]
for module in WARM:
    importlib.import_module(module)
# MLflow maps every installed distribution to its modules (reading each one's file list) the first time a process
# logs a model: ~0.8 CPU-s, once per process, kept in a module-level cache that the children inherit
importlib.import_module("mlflow.utils.requirements_utils")._init_packages_to_modules_map()

OWN_PATH = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]


def _child(request: dict, fds: list[int]) -> None:
    """In the forked child: become the command's process, then run ``python -m hyperflow <args>`` (or the
    tests' script)."""
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as a fresh interpreter has them
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    if request["new_session"]:
        os.setsid()
    stdin, stdout, stderr, exit_w = fds
    os.close(exit_w)
    for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(fd, target)
    for fd in {stdin, stdout, stderr} - {0, 1, 2}:
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    given = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
    rest = [p for p in sys.path[1:] if p not in OWN_PATH]
    script = request["script"]
    # `python -m` puts the working directory first on sys.path, `python script.py` the script's folder
    sys.path[:] = [os.path.dirname(script) if script else os.getcwd(), *given, *rest]
    _fresh_seeds()
    _warm_fork_server()
    try:
        if script:
            sys.argv = [script, *request["args"]]
            runpy.run_path(script, run_name="__main__")
        else:
            sys.argv = ["-m", *request["args"]]
            runpy.run_module("hyperflow", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc.code)
    _exit(code)


def _exit_code(code: object) -> int:
    """The exit status ``sys.exit(code)`` gives (a message is printed on stderr, status 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _exit(code: int) -> None:
    """Leave as the interpreter does (non-daemon threads joined, exit handlers run, the standard streams flushed:
    status 120 when stdout cannot be), less its last step, freeing every module: in a fork of the template that
    writes to each of its pages once, a copy of each (~0.4 s of a command's ~0.5 s floor, `hyperflow --version`)."""
    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception as exc:
            if stream is sys.stdout:
                print(f"Exception ignored on flushing sys.stdout:\n{type(exc).__name__}: {exc}", file=sys.stderr)
                code = 120
    os._exit(code)


def _warm_fork_server() -> None:
    """multiprocessing starts a command's fork server (the parent of its trial workers) as a fresh interpreter,
    ``python -c "from multiprocessing.forkserver import main; main(...)"``, which imports torch, MLflow and
    hyperflow again (~5 CPU-s). Here the command forks, before it runs, a clean copy of itself that waits; if the
    command starts a fork server, that copy becomes it, as exec would have left it: the command's descriptors
    0-2 and the ones multiprocessing passes, at their numbers, and no other; the command's environment and
    working directory then; its ignored signals ignored, the others at their defaults; fresh seeds. Then it runs
    the same ``main`` with the same preload list (hyperflow's own fork-server modules are first imported there).
    A command that never starts one ends the copy by exiting (end of file on their socket). Measured, four test
    files (test_parallel, test_progress, test_search_lock, test_resume), alternating, 2 rounds on the idle machine:
    147-156 CPU-s with it, 170-178 without."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        ours.close()
        _fork_server_when_asked(theirs)
    theirs.close()
    from multiprocessing import util

    spawn = util.spawnv_passfds

    def spawnv_passfds(path: str, args: list[str], passfds: tuple[int, ...]) -> int:
        nonlocal pid
        code = args[-1]
        if pid is None or args[-2:-1] != ["-c"] or not code.startswith("from multiprocessing.forkserver import"):
            return spawn(path, args, passfds)
        ignored = [int(sig) for sig in signal.valid_signals() if _disposition(sig) == signal.SIG_IGN]
        fds = [0, 1, 2, *passfds]
        request = {"code": code, "env": dict(os.environ), "cwd": os.getcwd(), "fds": fds, "ignored": ignored}
        socket.send_fds(ours, [json.dumps(request).encode()], fds)
        ours.close()
        started, pid = pid, None  # one copy, one fork server: a later one (the first one died) is a fresh one
        return started

    util.spawnv_passfds = spawnv_passfds


def _disposition(sig: int):
    try:
        return signal.getsignal(sig)
    except (OSError, ValueError):
        return None


def _fork_server_when_asked(sock: socket.socket) -> None:
    """In the copy: wait for the command's request, become its fork server (or exit at end of file)."""
    status = 0
    try:
        try:
            data, fds, _, _ = socket.recv_fds(sock, 1 << 20, 64)
        except OSError:
            data = b""
        if not data:
            os._exit(0)
        request = json.loads(data)
        wanted = request["fds"]
        spare = [fcntl.fcntl(fd, fcntl.F_DUPFD, 1024) for fd in fds]  # out of the way of the numbers wanted
        for fd, number in zip(spare, wanted, strict=True):
            os.dup2(fd, number)
        for fd in map(int, os.listdir("/proc/self/fd")):
            if fd not in wanted:
                try:
                    os.close(fd)
                except OSError:
                    pass
        for sig in signal.valid_signals():
            if callable(_disposition(sig)) or sig in request["ignored"]:
                signal.signal(sig, signal.SIG_IGN if sig in request["ignored"] else signal.SIG_DFL)
        if signal.SIGINT not in request["ignored"]:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        _fresh_seeds()
        exec(request["code"], {"__name__": "__main__"})
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        status = 1
    finally:
        os._exit(status)


def _fresh_seeds() -> None:
    """A fresh process draws its seeds from the OS; a fork would share the template's."""
    import random

    import numpy as np
    import torch

    random.seed()
    np.random.seed()
    torch.seed()


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    gc.freeze()  # the children's collections skip the imports (and do not copy their pages by touching them)
    assert threading.active_count() == 1, "the template must not fork with threads running"
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    exit_pipes: dict[int, int] = {}  # child pid -> the write end of its exit-code pipe
    while True:
        for key, _ in selector.select():
            if key.fileobj is sock:
                try:
                    data, fds, _, _ = socket.recv_fds(sock, 1 << 20, 4)
                except OSError:
                    return
                if not data:  # the test process is gone
                    return
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    signal.set_wakeup_fd(-1)
                    selector.close()  # the template's own descriptors are not the command's
                    sock.close()
                    for fd in (wake_r, wake_w, *exit_pipes.values()):
                        os.close(fd)
                    _child(json.loads(data), fds)
                exit_pipes[pid] = fds[3]
                for fd in fds[:3]:
                    os.close(fd)
                sock.send(str(pid).encode())
            else:
                os.read(wake_r, 4096)
                while exit_pipes:
                    try:
                        pid, status = os.waitpid(-1, os.WNOHANG)
                    except ChildProcessError:
                        break
                    if pid == 0:
                        break
                    exit_w = exit_pipes.pop(pid, None)
                    if exit_w is not None:
                        try:
                            os.write(exit_w, struct.pack("i", os.waitstatus_to_exitcode(status)))
                        except OSError:
                            pass  # the test stopped waiting for it
                        os.close(exit_w)


if __name__ == "__main__":
    main()
