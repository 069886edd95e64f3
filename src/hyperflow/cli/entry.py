"""A command run as the process: ``[command, key=value, ...]`` → parse → the start-up checks → one workflow →
an exit code, with one line on stderr for what stopped it. As the process's entry, SIGTERM stops it as
Ctrl-C does (runtime.signals), and stdout closed early gives 141."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

from hyperflow.cli.checks import check_start
from hyperflow.cli.commands import COMMANDS
from hyperflow.cli.exits import Interrupted, runs_ended, store_refusal, tracking_module
from hyperflow.cli.help import USAGE
from hyperflow.cli.parsing import Invocation, command_name, parse
from hyperflow.errors import UsageError, without_credentials
from hyperflow.runtime import library_logs, signals, startup
from hyperflow.runtime.streams import TolerantStream


def main(argv: Sequence[str] | None = None, *, from_mlproject: bool = False) -> int:
    """Run one command; its exit code. As the process's entry (the ``hyperflow`` script, ``steps/*.py``), a
    signal once the command's work is done (its last run has ended) ends the process with that code and no
    traceback (runtime.signals); stdout closed early (``| head``) gives 141, as for a tool killed by SIGPIPE."""
    process = argv is None or from_mlproject
    streams = [TolerantStream.wrap("stdout"), TolerantStream.wrap("stderr")] if process else []
    if process:
        signals.own_process()
    code = 1
    try:
        code = _main(argv, from_mlproject=from_mlproject)
    except BrokenPipeError:  # a stream that could not be wrapped
        TolerantStream(sys.stdout).lose()
        code = 141
    finally:
        if process:
            signals.exit_on_signals(code)
    return 141 if code == 0 and any(s.lost for s in streams) else code


def _main(argv: Sequence[str] | None, *, from_mlproject: bool) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] == "--version":
        from hyperflow.version import version

        print(f"hyperflow {version()}")
        return 0
    command, rest = command_name(argv[0]), argv[1:]
    if command is None:
        print(f"hyperflow: error: unknown command '{argv[0]}': choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    run, helper = COMMANDS[command]
    if any(a in ("-h", "--help") for a in rest):
        print(helper())
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    library_logs.install()  # the libraries' records in one line each (HYPERFLOW_VERBOSE=1: in full)
    startup.begin()
    # SIGTERM stops the command as Ctrl-C does from its first moment (exit 130, one line), not only once a
    # run is open (tracking.tracked_run ends that run KILLED); once its work is done, a signal ends it with its code
    try:
        with signals.sigterm_stops():
            return _command(run, command, rest, from_mlproject)
    finally:
        if tracking_module() is not None:
            tracking_module().forget_runs()  # the runs of this command only
        startup.restore()


def _command(run: Callable[[Invocation], int], command: str, rest: list[str], from_mlproject: bool) -> int:
    """Parse, check and run one command: its exit code, with one line for what stopped it."""
    try:
        invocation = parse([command, *rest], from_mlproject=from_mlproject)
        check_start(invocation)
        return run(invocation)
    except UsageError as exc:
        print(f"hyperflow: error: {without_credentials(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        print(
            str(exc) if isinstance(exc, Interrupted) else f"hyperflow {command}: interrupted; {runs_ended()}",
            file=sys.stderr,
        )
        return 130
    except Exception as exc:  # one line: hyperflow's own outcomes with an exit code (RegistryError), a store's failure
        code, text = getattr(exc, "exit_code", None), str(exc)
        if not (isinstance(code, int) and type(exc).__module__.startswith("hyperflow.")):
            refused = store_refusal(exc, command)
            if refused is None:
                raise
            text, code = refused
        print(f"hyperflow {command}: error: {without_credentials(text)}", file=sys.stderr)
        return code
