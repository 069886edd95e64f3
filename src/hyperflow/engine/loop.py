"""The loop of one search: the grid's points or hyperopt's suggestions (:mod:`hyperflow.engine.plan`), run by a
backend: one at a time in this process, at once on local workers (:mod:`hyperflow.engine.workers`) or on Spark
(:mod:`hyperflow.engine.spark`), until the budget or the stop rule (:mod:`hyperflow.engine.stopping`) ends it.
It knows no runs and no training: each trial is ``objective(params, trial)`` (:mod:`hyperflow.engine.trial`),
and each finished one goes to ``on_finished(record, kept)`` (``kept``: what the objective handed back) and to
the search's live progress (:mod:`hyperflow.engine.progress`, whichever backend ran it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from hyperflow import machine, names
from hyperflow.config.search import MAX_EVALS
from hyperflow.core.pruning import make_pruner, peer_statuses
from hyperflow.engine import hyperopt_records, workers
from hyperflow.engine.plan import Plan, next_number
from hyperflow.engine.progress import SearchProgress
from hyperflow.engine.space_hyperopt import flatten, to_hyperopt
from hyperflow.engine.stopping import Finished, StopRule
from hyperflow.engine.trial import Objective, Trial, TrialRecord, lost_trial, run_trial


@dataclass
class _Dispatch:
    """Trials at once: whether a place is free, starting a trial (number, point), the trials finished since the
    last call (``block``: wait for one first) as (number, record), and how many run."""

    free: Callable[[], bool]
    start: Callable[[int, dict[str, Any]], None]
    collect: Callable[..., list[tuple[int, TrialRecord]]]
    running: Callable[[], int]


class SearchLoop:
    """The trials of ``plan``, ``at_once`` at a time, with ``seed`` for the suggestions."""

    def __init__(
        self,
        plan: Plan,
        objective: Objective,
        *,
        seed: int,
        at_once: int,
        stop: StopRule,
        on_finished: Callable[[TrialRecord, Any], None],
        pool: workers.WorkerPool | None = None,
        spark_session: Any = None,
        progress: bool = False,
    ) -> None:
        """``pool``: workers started early (else made here when the trials run on workers); ``progress``: show the
        search's live progress on stderr."""
        self.plan, self.objective, self.seed, self.at_once = plan, objective, seed, at_once
        self.stop, self.on_finished, self.pool, self.spark_session = stop, on_finished, pool, spark_session
        self.settings = plan.settings
        self.records = list(plan.history)
        self.highest = plan.highest  # of every trial run of this search, those killed included
        ok = [r.loss for r in plan.history if r.status == names.TRIAL_OK and r.loss is not None]
        self.best = min(ok, default=None)
        self.show_progress, self.progress = progress, None

    @property
    def on_spark(self) -> bool:
        """The trials run as Spark tasks (hyperopt's suggestions; a grid runs here)."""
        return self.settings.backend == "spark" and self.settings.strategy != "grid"

    @property
    def on_workers(self) -> bool:
        """The trials run at once on local worker processes."""
        return self.at_once > 1 and not self.on_spark

    def run(self) -> bool:
        """Run the trials; True when Spark cancelled the search at its own timeout."""
        self.progress = self._progress() if self.show_progress else None
        try:
            if self.settings.strategy == "grid":
                self._run_grid()
            elif self.on_spark:
                return self._run_spark()
            else:
                self._run_hyperopt()
            return False
        finally:
            if self.progress is not None:
                self.progress.close()

    def _progress(self) -> SearchProgress:
        s = self.settings
        total = len(self.records) + len(self.plan.grid()) if s.strategy == "grid" else s.max_evals
        history = [(r.status, r.loss, r.epochs, r.number) for r in self.records]
        return SearchProgress(
            None if total >= MAX_EVALS else total, budget=self.stop.budget, deadline=self.stop.deadline, history=history
        )

    # ------------------------------------------------------------------------------------- trials
    def _next_number(self) -> int:
        return next_number(self.records, self.highest, self.settings.backend == "spark" or self.at_once > 1)

    def _trial(self, number: int, point: dict[str, Any], threads: int | None = None) -> Trial:
        s = self.settings
        peers = [(r.number, r.history) for r in self.records if r.status in peer_statuses(s.pruner)]
        pruner = make_pruner(s.pruner, s.min_epochs, s.reduction_factor, s.prune_startup_trials, s.prune_patience)
        best = float("inf") if self.best is None else self.best
        left = self.stop.units_left(self._finished())
        return Trial(number, point, pruner, peers, self.stop.deadline, best, threads, left)

    def _finished(self) -> list[Finished]:
        return [Finished(r.status == names.TRIAL_FAILED, r.loss, r.reason, r.epochs) for r in self.records]

    def _record(self, record: TrialRecord, kept: Any) -> None:
        self.records.append(record)
        if record.status == names.TRIAL_OK and record.loss is not None:
            self.best = record.loss if self.best is None else min(self.best, record.loss)
        self.on_finished(record, kept)
        if self.progress is not None:
            self.progress.add(record.number, record.status, record.loss, record.epochs)

    def _run_here(self, point: dict[str, Any], number: int | None = None) -> TrialRecord:
        """Run one point in this process and record it."""
        trial = self._trial(self._next_number() if number is None else number, point)
        record = run_trial(self.objective, trial)
        self._record(record, trial.keep)
        return record

    @contextmanager
    def _workers(self) -> Iterator[_Dispatch]:
        """``at_once`` worker processes running trials (each with its share of the cores as threads); on Ctrl-C,
        SIGTERM or a failure, the trials in flight are stopped (their runs end KILLED) before it goes on."""
        pool, self.pool = self.pool or workers.WorkerPool(self.at_once), None
        threads = machine.threads_per_trial(self.at_once)
        keep = peer_statuses(self.settings.pruner)
        trials: dict[int, Trial] = {}

        before = sum(r.epochs for r in self.records)  # the units used before these workers' trials
        if self.stop.budget:  # every trial in flight counts its steps in one file: the budget is shared
            self.stop.counted = lambda: before + os.path.getsize(pool.units)

        def start(number: int, point: dict[str, Any]) -> None:
            self.highest = max(self.highest, number)
            trial = trials[number] = self._trial(number, point, threads)
            trial.peers = workers.PeerCurves(list(trial.peers), pool.curves)
            if self.stop.budget:
                trial.units_left, trial.units_file = self.stop.budget - before, pool.units
            pool.submit(number, self.objective, trial)

        def collect(block: bool, timeout: float | None = None) -> list[tuple[int, TrialRecord]]:
            done, failures = [], []
            for number, future in pool.finished(block, timeout):
                trial = trials.pop(number)
                try:
                    record, kept = future.result()
                except BrokenProcessPool:  # its worker died: the trial fails, the others go on
                    record, kept = lost_trial(self.objective, trial, pool.deaths.pop(future)), None
                except BaseException as exc:  # a failure that stops the search, or a trial stopped by an interrupt
                    failures.append(exc)
                    continue
                self._record(record, kept)
                if record.status in keep:
                    pool.add_curve(number, record.history)
                done.append((number, record))
            if failures:
                raise failures[0]
            return done

        try:
            yield _Dispatch(lambda: pool.free, start, collect, lambda: len(pool.running))
        except BaseException:
            pool.interrupt()
            pool.collect_stopped(collect)
            self.stop.counted = None
            pool.close(kill=bool(pool.running), check=False)
            raise
        self.stop.counted = None
        pool.close()

    # ------------------------------------------------------------------------------------- loops
    def _run_grid(self) -> None:
        todo = self.plan.grid()
        if self.at_once == 1:
            for point in todo:
                if self.stop.check(self._finished()):
                    return
                self._run_here(point)
            return
        with self._workers() as dispatch:
            for point in todo:
                while not dispatch.free():
                    dispatch.collect(True)
                if self.stop.check(self._finished()):
                    break
                dispatch.start(self._next_number(), point)
            while dispatch.running():
                dispatch.collect(True)

    def _hyperopt_trials(self, trials: Any) -> Any:
        """``trials`` filled with the history in the space and the presets still to run queued."""
        trials = hyperopt_records.fill(trials, self.plan.learned(), self._next_number())
        for vals in self.plan.presets():
            hyperopt_records.queue(trials, vals)
        return trials

    def _suggest(self) -> Any:
        s = self.settings
        return hyperopt_records.algo(s.strategy, s.n_startup_jobs, s.gamma, self.seed, self.stop.check)

    def _run_hyperopt(self) -> None:
        """fmin over the space: in this process (trial number = the id hyperopt evaluates), or on workers
        (started as soon as one is free, until the budget or the stop rule ends it, then drained)."""
        trials = self._hyperopt_trials(hyperopt_records.new_trials())
        space, budget = to_hyperopt(self.plan.space), self.plan.budget()
        if self.at_once == 1:

            def objective(sample: dict[str, Any]) -> dict[str, Any]:
                record = self._run_here(flatten(sample), hyperopt_records.running_tid(trials))
                return hyperopt_records.trial_result(record)

            hyperopt_records.minimize(objective, space, trials, self._suggest(), budget, self.seed)
            return
        with self._workers() as dispatch:

            def start(number: int, sample: dict[str, Any]) -> None:
                dispatch.start(number, flatten(sample))

            hyperopt_records.minimize_elsewhere(
                dispatch.free, start, dispatch.collect, space, trials, self._suggest(), budget, self.seed
            )
            while dispatch.running():  # on an exception, the workers are stopped instead
                dispatch.collect(True)

    def _run_spark(self) -> bool:
        """Trials as Spark tasks (their records are read back by the caller); True when SparkTrials cancelled
        the search at its own timeout."""
        from hyperflow.engine.spark import SparkBackend, SparkObjective

        s = self.settings
        backend = SparkBackend(s.spark_master, self.at_once, self.spark_session, self.stop.deadline)
        trials = self._hyperopt_trials(backend.new_trials())
        template = self._trial(0, {}, backend.threads)
        objective = SparkObjective(
            self.objective, template, peer_statuses(s.pruner), self._next_number(), trials, self.stop.budget
        )
        shown = None if self.progress is None else hyperopt_records.FinishedTrials(trials, self.progress.add)
        cancelled = backend.search(
            objective, self.plan.space, trials, self._suggest(), self.plan.budget(), self.seed, progress=shown
        )
        if shown is not None:
            shown.finish()  # the last trials' lines
        return cancelled
