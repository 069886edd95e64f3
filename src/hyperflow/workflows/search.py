"""The ``search`` workflow: one search from start to end, as ``hyperflow search`` and ``retrain mode=search`` run it.

Set-up and every input check (:mod:`~hyperflow.workflows.search_setup`), the search lock
(:mod:`~hyperflow.workflows.search_lock`), the search run (new, or reopened by a resume, whose trials are read back
from MLflow, the source of truth: a kill loses at most the trials in flight), its settings, ``lr_bounds=auto``'s
range test, the trials (the engine, :mod:`hyperflow.engine.loop`), then the end: the trials table, the best trial,
its model logged, registered and made the ``challenger`` (:mod:`~hyperflow.workflows.search_finish`).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from hyperflow import names, tracking
from hyperflow.config import SearchConfig, TrainConfig
from hyperflow.engine.loop import SearchLoop
from hyperflow.engine.plan import Plan
from hyperflow.engine.space import config_at
from hyperflow.engine.stopping import StopRule
from hyperflow.engine.trial import TrialRecord
from hyperflow.engine.workers import WorkerFailed, WorkerPool
from hyperflow.errors import SearchFailed, UsageError
from hyperflow.runtime import startup
from hyperflow.tracking import search_record, search_store
from hyperflow.workflows.search_finish import finish_objective_search, finish_search
from hyperflow.workflows.search_job import SearchJob
from hyperflow.workflows.search_lock import SearchLock
from hyperflow.workflows.search_objective import FunctionObjective
from hyperflow.workflows.search_outcome import SearchInterrupted, SearchOutcome, search_store_failure
from hyperflow.workflows.search_setup import lr_bounds, prepare_search, record_settings
from hyperflow.workflows.search_trial import TrainObjective
from hyperflow.workflows.search_trials import TrialsSeen

__all__ = ["SearchFailed", "SearchInterrupted", "SearchOutcome", "TrialRecord", "search"]


@dataclass
class _Opened:
    """The search run once it is open (the line of a store failure and of an interrupt name it)."""

    run_id: str = ""
    artifact_uri: str = ""


def search(
    settings: SearchConfig,
    base: TrainConfig,
    *,
    given: Collection[str] | None = None,
    parent_run_id: str | None = None,
    spark_session: Any = None,
    function: Callable[..., Any] | None = None,
    space: dict[str, Any] | None = None,
) -> SearchOutcome:
    """Run (or resume) a search. ``given``: the settings the user set (a resume takes every other one from the
    search it resumes); ``parent_run_id``: the run a new search's run nests under (a retrain's); ``function``:
    the objective ``settings.objective`` names, when the caller has it (``hyperflow.search``); ``space``: the
    space as a mapping instead of a file. Bad input raises UsageError before any run is written; a store that
    fails, SearchFailed (one line); Ctrl-C or SIGTERM once the search run exists, SearchInterrupted (its runs
    end KILLED)."""
    job = prepare_search(settings, base, given, spark_session, function, space)
    lock, opened, store_failed = None, _Opened(), False
    try:
        lock = SearchLock(job.settings.resume)
        # MLflow logs a traceback per database error and hyperopt a line per exception in the objective: a
        # failure is reported once, below, in one line
        with search_store.quiet_logs("hyperopt.fmin"):
            return _search_run(job, lock, opened, parent_run_id, spark_session, progress=base.progress)
    except KeyboardInterrupt:
        if opened.run_id:
            raise SearchInterrupted(opened.run_id) from None
        raise
    except Exception as exc:
        if isinstance(exc, (SearchFailed, UsageError)) or not tracking.is_store_error(exc):
            raise
        store_failed = True
        failed = opened.run_id or job.settings.resume
        raise SearchFailed(search_store_failure(exc, opened.artifact_uri, failed)) from None
    finally:
        if not store_failed:  # a store that failed is not asked again (a server gone: retries for minutes)
            _unlock(lock)


def _search_run(
    job: SearchJob, lock: SearchLock, opened: _Opened, parent_run_id: str | None, spark_session: Any, progress: bool
) -> SearchOutcome:
    """The search run from its lock to its end: one process per search run (a resume takes the lock as its first
    write, exit 4 while a live process holds it; a new search writes it with its run); ``progress``: the trials'
    live progress shown (the user's ``progress`` setting: the trials themselves show none)."""
    s, fresh = job.settings, job.resumed is None
    if not fresh:
        lock.acquire()
        taken = lock.takeover_message()
        if taken:  # a dead process's lock: say whose
            print(f"hyperflow search: {taken}", file=sys.stderr, flush=True)
    pool, loop = None, None
    with tracking.tracked_run(
        names.ROLE_SEARCH,
        experiment=job.base.experiment,
        run_id=s.resume,
        parent_run_id=parent_run_id if fresh else None,
        run_name=tracking.unique_run_name("search", job.name) if fresh else None,
        tags={
            **(tracking.run_tags(job.dataset) if job.dataset is not None else {}),
            **({names.SEARCH_LOCK: lock.value()} if fresh else {}),
        },
    ) as run:
        run_id, experiment_id = run.info.run_id, run.info.experiment_id
        opened.run_id, opened.artifact_uri = run_id, run.info.artifact_uri
        if fresh:
            lock.bind(run_id)
        try:
            objective, calls, pool = _objective(job, experiment_id, run_id)  # started while the settings are recorded
            record_settings(job, run_id)
            history, highest = _history(job, experiment_id, run_id)
            plan = Plan(lr_bounds(job, run_id), s, tuple(history), highest)
            deadline = time.time() + s.timeout if s.timeout else None
            seen = TrialsSeen(run_id, history, calls.submit)
            loop = SearchLoop(
                plan,
                objective,
                seed=job.base.seed,
                at_once=job.at_once,
                stop=StopRule.of(s, deadline),
                on_finished=seen,
                pool=pool,
                spark_session=spark_session,
                progress=progress,
            )
            timed_out = _run_trials(loop, seen, experiment_id, run_id, calls)
        finally:
            pool = pool if loop is None else loop.pool  # the loop takes the pool when its trials start
            if pool is not None:  # a failure before the trials started
                pool.close(kill=True, check=False)
        records = sorted(seen.records, key=lambda r: r.number)  # trials run at once finish out of order
        stop_reason = loop.stop.final(timed_out)
        search_record.set_stop_reason(stop_reason)
        units = sum(r.epochs for r in records)  # pruned and failed trials included
        search_record.set_units_used(units)
        outcome = SearchOutcome(
            run_id, experiment_id, records, None, stop_reason, at_once=job.at_once, objective=s.objective or ""
        )
        outcome.units, outcome.budget = units, s.budget
        if job.dataset is None:
            return finish_objective_search(outcome, s, job.base.seed, job.name)
        return finish_search(
            outcome, s, job.dataset, job.base.seed, lambda point: config_at(job.base, point), seen.kept
        )


def _objective(job: SearchJob, experiment_id: str, run_id: str) -> tuple[Any, Any, WorkerPool | None]:
    """The trials' objective (hyperflow's trainer in a child run of the search, or the user's function in one),
    how the MLflow calls of the trials in this process go out (on a background thread, overlapping their
    training), and for trials at once on local workers their pool, started now."""
    s, base, calls = job.settings, job.base, tracking.BackgroundCalls()
    where = "spark" if s.backend == "spark" and s.strategy != "grid" else "worker" if job.at_once > 1 else "here"
    if job.function is not None:
        objective: Any = FunctionObjective(job.function, str(s.objective), experiment_id, run_id, where)
    else:
        objective = TrainObjective(base, experiment_id, run_id, where=where, send=calls.submit, dataset=job.dataset)
    pool = WorkerPool(job.at_once) if where == "worker" else None
    if pool is not None and s.backend == "local":
        pool.warm(objective)
    return objective, calls, pool


def _history(job: SearchJob, experiment_id: str, run_id: str) -> tuple[list[TrialRecord], int]:
    """The trials of a resumed search whose results reached MLflow, and the highest trial number it ran."""
    if job.resumed is None:
        return [], -1
    rows, highest = search_store.read_trials(experiment_id, run_id)
    return [TrialRecord(**row) for row in rows], highest


def _run_trials(loop: SearchLoop, seen: TrialsSeen, experiment_id: str, run_id: str, calls: Any) -> bool:
    """The engine's loop; then every trial's results and end in MLflow before the search goes on. Trials that
    ran elsewhere are read back (Spark's; those its cancel left RUNNING end KILLED); trials stopped in flight
    on workers end KILLED; a worker that died between trials left its last trial's closing calls to the search."""
    elsewhere, on_workers = loop.on_spark, loop.on_workers
    startup.end()  # the command.s start-up is over, whichever process runs the trials: see hyperflow.runtime.startup
    try:
        timed_out = loop.run()
    except WorkerFailed as exc:  # a call a worker sent after its last trial returned
        raise tracking.StoreFailure(str(exc)) from None
    except BaseException:
        if on_workers:
            try:
                search_store.read_trials(experiment_id, run_id)
            except Exception:
                pass  # the store failed: a resume ends them
        raise
    finally:
        try:
            if elsewhere:
                seen.read_back([TrialRecord(**row) for row in search_store.read_trials(experiment_id, run_id)[0]])
            seen.log([], force=True)
        finally:
            calls.close()
    if on_workers:
        search_store.end_unended_trials(experiment_id, run_id, seen.records)
    return timed_out


def _unlock(lock: SearchLock | None) -> None:
    """Release the search's lock once its run has ended (best effort: a lock left behind names a process
    that is gone, and the next resume takes it over: at once on this host, elsewhere when its lease ends)."""
    if lock is None or not lock.run_id:  # a new search whose run was never created: nothing held
        return
    try:
        lock.release()
    except Exception as exc:  # the store failed: the search's own line says so, once
        logging.getLogger(__name__).debug("could not release the lock of search run %s: %s", lock.run_id, exc)
