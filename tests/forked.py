"""``python -m hyperflow ...`` run as a process for the tests, forked from a warm template (tests/zygote.py).

``run`` and ``Popen`` take what ``subprocess.run`` and ``subprocess.Popen`` take. A command line that starts
``[sys.executable, "-m", "hyperflow"]``, or a script of the tests' own folder such as tests/paused_command.py
(with the keyword arguments below), runs in a child of the template:
a process of its own with its pid, environment, working directory, streams, signals and exit code, running
hyperflow's real entry point, which skips only the ~3 s of CPU that a fresh interpreter spends importing
torch, MLflow and pandas (the suite starts about 300 commands: this is most of its CPU time; measured in
docs/benchmarks.md, "Test suite"). Anything else (another program, interpreter flags such as ``-X importtime``,
a ``preexec_fn``) runs as ``subprocess`` would, and so does every command when ``HYPERFLOW_TEST_FRESH=1`` (with
Ctrl-C as from a terminal, as in the template):
tests of what a fresh interpreter does at start call ``subprocess`` themselves.

The template is started once per test process, on first use; a child's exit code comes back through a pipe
that only the template writes (the template, not the test, is the child's parent).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PIPE, STDOUT, DEVNULL = subprocess.PIPE, subprocess.STDOUT, subprocess.DEVNULL
HYPERFLOW = [sys.executable, "-m", "hyperflow"]
TESTS = Path(__file__).resolve().parent
AUDIT_EVENT = "hyperflow.tests.command"
_SUPPORTED = {"cwd", "env", "stdin", "stdout", "stderr", "text", "universal_newlines", "start_new_session"}


class _Template:
    """The warm template process and the socket commands are sent on (one request at a time)."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        zygote = Path(__file__).with_name("zygote.py")
        self.process = subprocess.Popen(
            [sys.executable, str(zygote), str(theirs.fileno())], pass_fds=[theirs.fileno()], stdin=DEVNULL
        )
        theirs.close()
        self.sock, self.lock = ours, threading.Lock()

    def close(self) -> None:
        """The template exits once its socket closes (its children, if any still run, go on)."""
        self.sock.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def start(self, request: dict, fds: list[int]) -> int:
        with self.lock:
            socket.send_fds(self.sock, [json.dumps(request).encode()], fds)
            answer = self.sock.recv(64)
        if not answer:
            raise RuntimeError(f"the command template exited ({self.process.poll()})")
        return int(answer)


_template: _Template | None = None
_template_lock = threading.Lock()


def _warm() -> _Template:
    global _template
    with _template_lock:
        if _template is None or _template.process.poll() is not None:
            _template = _Template()
            atexit.register(_template.close)
        return _template


def _script(args: Sequence[Any]) -> str | None:
    """The tests' own script this command line runs (``python tests/<name>.py ...``), else None."""
    if len(args) > 1 and str(args[0]) == sys.executable and str(args[1]).endswith(".py"):
        path = Path(args[1]).resolve()
        if path.parent == TESTS:
            return str(path)
    return None


def _ours(args: Sequence[Any]) -> bool:
    """Whether this command line is ``python -m hyperflow ...`` or a tests' script."""
    return [str(a) for a in args[:3]] == HYPERFLOW or _script(args) is not None


def forked(args: Sequence[Any], kwargs: dict[str, Any]) -> bool:
    """Whether this command line runs in the template."""
    return _ours(args) and set(kwargs) <= _SUPPORTED and os.environ.get("HYPERFLOW_TEST_FRESH") != "1"


def _as_from_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _fresh(args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """``subprocess``'s keywords for a command line: one of ours started fresh gets Ctrl-C as from a terminal,
    as the template's children have it (a test runner started in the background, with ``nohup`` or ``&``,
    passes SIGINT on ignored, and the interpreter would then keep it ignored)."""
    if _ours(args) and "preexec_fn" not in kwargs:
        return {**kwargs, "preexec_fn": _as_from_a_terminal}
    return kwargs


class ForkedProcess:
    """The part of ``subprocess.Popen`` the tests use, for a child of the template."""

    def __init__(
        self,
        args: Sequence[Any],
        *,
        cwd: str | os.PathLike | None = None,
        env: dict[str, str] | None = None,
        stdin: Any = None,
        stdout: Any = None,
        stderr: Any = None,
        text: bool = False,
        universal_newlines: bool = False,
        start_new_session: bool = False,
    ) -> None:
        self.args, self.returncode = list(args), None
        text = text or universal_newlines
        self.stdin = self.stdout = self.stderr = None
        opened: list[int] = []  # our copies of the child's ends, closed once sent

        def child_end(spec: Any, fd: int, readable: bool) -> int:
            if spec is None:
                return fd
            if spec == DEVNULL:
                end = os.open(os.devnull, os.O_RDONLY if readable else os.O_WRONLY)
                opened.append(end)
                return end
            if spec == PIPE:
                r, w = os.pipe()
                mine, theirs = (w, r) if readable else (r, w)
                opened.append(theirs)
                mode = ("w" if readable else "r") + ("" if text else "b")
                stream = open(mine, mode, encoding="utf-8" if text else None)
                if fd == 0:
                    self.stdin = stream
                elif fd == 1:
                    self.stdout = stream
                else:
                    self.stderr = stream
                return theirs
            return spec if isinstance(spec, int) else spec.fileno()

        fds = [child_end(stdin, 0, True), child_end(stdout, 1, False)]
        fds.append(fds[1] if stderr == STDOUT else child_end(stderr, 2, False))
        exit_r, exit_w = os.pipe()
        script = _script(args)
        request = {
            "script": script,
            "args": [str(a) for a in args[2 if script else 3 :]],
            "env": dict(os.environ if env is None else env),
            "cwd": os.fspath(cwd) if cwd is not None else os.getcwd(),
            "new_session": start_new_session,
        }
        sys.audit(AUDIT_EVENT, self.args)  # tests/conftest.py counts it as a process started
        try:
            self.pid = _warm().start(request, [*fds, exit_w])
        finally:
            for fd in (*opened, exit_w):
                os.close(fd)
        self._exit = exit_r

    def poll(self) -> int | None:
        if self.returncode is None:
            import select

            if select.select([self._exit], [], [], 0)[0]:
                self._read_exit()
        return self.returncode

    def _read_exit(self) -> None:
        data = b""
        while len(data) < 4:
            chunk = os.read(self._exit, 4 - len(data))
            if not chunk:
                break
            data += chunk
        os.close(self._exit)
        self.returncode = struct.unpack("i", data)[0] if len(data) == 4 else 255

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            import select

            if not select.select([self._exit], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired(self.args, timeout)
            self._read_exit()
        return self.returncode

    def communicate(self, input: Any = None, timeout: float | None = None) -> tuple[Any, Any]:
        """Write ``input``, read both pipes to their end (each on a thread of its own), wait for the exit."""
        results: dict[str, Any] = {}
        readers = []
        for name in ("stdout", "stderr"):
            stream = getattr(self, name)
            if stream is not None:
                thread = threading.Thread(target=lambda n=name, s=stream: results.__setitem__(n, s.read()), daemon=True)
                thread.start()
                readers.append(thread)
        if self.stdin is not None:
            try:
                if input:
                    self.stdin.write(input)
                self.stdin.close()
            except BrokenPipeError:
                pass
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in readers:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout)
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        for name in ("stdout", "stderr"):
            stream = getattr(self, name)
            if stream is not None:
                stream.close()
        return results.get("stdout"), results.get("stderr")

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def __enter__(self) -> ForkedProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        for stream in (self.stdout, self.stderr, self.stdin):
            if stream is not None:
                stream.close()
        self.wait()


def Popen(args: Sequence[Any], **kwargs: Any) -> Any:
    """``subprocess.Popen``, forked from the template where it can be."""
    return ForkedProcess(args, **kwargs) if forked(args, kwargs) else subprocess.Popen(args, **_fresh(args, kwargs))


def run(
    args: Sequence[Any],
    *,
    input: Any = None,
    capture_output: bool = False,
    timeout: float | None = None,
    check: bool = False,
    **kwargs: Any,
) -> subprocess.CompletedProcess:
    """``subprocess.run``, forked from the template where it can be."""
    if not forked(args, kwargs):
        fresh = _fresh(args, kwargs)
        return subprocess.run(args, input=input, capture_output=capture_output, timeout=timeout, check=check, **fresh)
    if capture_output:
        kwargs.update(stdout=PIPE, stderr=PIPE)
    if input is not None:
        kwargs["stdin"] = PIPE
    process = ForkedProcess(args, **kwargs)
    try:
        out, err = process.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    if check and process.returncode:
        raise subprocess.CalledProcessError(process.returncode, args, out, err)
    return subprocess.CompletedProcess(args, process.returncode, out, err)
