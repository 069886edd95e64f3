"""One function per command: run its workflow with the parsed configs, print its summary, return its exit code
(0 done, 1 the job failed, 3 rejected by the gate, ...); the table of commands and their help."""

from __future__ import annotations

import sys
from collections.abc import Callable

from hyperflow import names
from hyperflow.cli.exits import Interrupted, runs_ended
from hyperflow.cli.help import predict_help, promote_help, retrain_help, search_help, train_help
from hyperflow.cli.parsing import Invocation
from hyperflow.cli.summaries import lr_find_summary, promotion_summary, search_summary, train_summary


def cmd_train(inv: Invocation) -> int:
    from hyperflow.workflows.train import TrainingDiverged, train

    try:
        outcome = train(inv.train)
    except TrainingDiverged as exc:
        print(f"hyperflow train: diverged: {exc}", file=sys.stderr)
        return 1
    print(train_summary(outcome))
    return 0


def cmd_lr_find(inv: Invocation) -> int:
    from hyperflow.workflows.lr_find import lr_find

    outcome = lr_find(inv.train)
    print(lr_find_summary(outcome))
    if outcome.finder.status_ != "ok":  # the LR finder's own status (ok | flat | no_divergence | noisy)
        print(
            f"hyperflow lr-find: warning: status {outcome.finder.status_}: {outcome.finder.status_help_}",
            file=sys.stderr,
        )
    return 0


def cmd_search(inv: Invocation) -> int:
    import time

    from hyperflow.runtime import processes

    local, parallel = inv.search.backend == "local", inv.search.parallelism != 1  # a resume's come from its search
    if local and parallel and not inv.search.resume and processes.available():  # the workers' imports, meanwhile
        processes.prestart()
    from hyperflow.workflows.search import SearchInterrupted, search

    started = time.monotonic()
    try:
        outcome = search(inv.search, inv.train, given=inv.given)
    except SearchInterrupted as exc:  # main prints this one line, and only it
        raise Interrupted(
            f"hyperflow search: interrupted; {runs_ended()}. Resume with: hyperflow search resume={exc.run_id}"
        ) from None
    print(search_summary(outcome, time.monotonic() - started))
    return 0 if outcome.best is not None else 1


def cmd_promote(inv: Invocation) -> int:
    from hyperflow.errors import ChampionConflict
    from hyperflow.workflows.promote import promote

    try:
        outcome = promote(inv.promote)
    except ChampionConflict as exc:
        print(f"hyperflow promote: {exc}", file=sys.stderr)
        return exc.exit_code
    print(promotion_summary(outcome))
    return 0 if outcome.passed else 3


def cmd_retrain(inv: Invocation) -> int:
    from hyperflow.errors import ChampionConflict
    from hyperflow.workflows.lock import LockHeld
    from hyperflow.workflows.retrain import retrain
    from hyperflow.workflows.train import TrainingDiverged

    try:
        outcome = retrain(inv.retrain, inv.overrides)
    except (LockHeld, ChampionConflict) as exc:
        print(f"hyperflow retrain: {exc}", file=sys.stderr)
        return exc.exit_code
    except TrainingDiverged as exc:
        print(f"hyperflow retrain: training diverged: {exc}; the champion stays", file=sys.stderr)
        return 1
    if outcome.outcome == names.OUTCOME_SKIPPED:
        done_by = "the champion's own run" if outcome.by_champion else "retrain run"
        print(
            f"hyperflow retrain: skipped: {done_by} {outcome.previous_run_id} already did data "
            f"{outcome.data} with this code (force=true to retrain); run {outcome.run_id}"
        )
        return 0
    print(
        f"hyperflow retrain: {outcome.outcome}: version {outcome.version} trained on {outcome.data}; "
        f"run {outcome.run_id}"
    )
    print(promotion_summary(outcome.promotion))
    return 0 if outcome.outcome == names.OUTCOME_PROMOTED else 3


def cmd_predict(inv: Invocation) -> int:
    from hyperflow.workflows.predict import predict_file

    count = predict_file(**inv.predict)
    out = inv.predict["out"]
    # without out= the rows went to stdout as CSV: the line about them goes to stderr, so stdout stays the table
    print(
        f"hyperflow predict: {count} rows scored with {inv.predict['model']} -> {out or 'stdout'}",
        file=sys.stdout if out else sys.stderr,
    )
    return 0


COMMANDS: dict[str, tuple[Callable[[Invocation], int], Callable[[], str]]] = {
    "train": (cmd_train, train_help),
    "lr-find": (cmd_lr_find, lambda: train_help("lr-find")),
    "search": (cmd_search, search_help),
    "promote": (cmd_promote, promote_help),
    "retrain": (cmd_retrain, retrain_help),
    "predict": (cmd_predict, predict_help),
}
