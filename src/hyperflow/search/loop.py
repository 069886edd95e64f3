"""The loop of one search: the grid's points or hyperopt's suggestions, run one at a time in this process, at once
on local workers (:mod:`hyperflow.search.workers`) or on Spark (:mod:`hyperflow.search.spark`), until the
budget or the stop rule (:mod:`hyperflow.search.stopping`) ends it. It knows no runs: each finished trial goes to
``on_finished``, which its caller (the search workflow) records.

A resumed search continues the search it resumes: trial numbers are hyperopt ids and each id's suggestion is
seeded from (``seed``, id) alone, so it proposes what the uninterrupted search would have proposed next. The
literature presets not yet run are queued again when a search was interrupted among them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any

from hyperflow import machine, names
from hyperflow.config import SearchConfig, TrainConfig
from hyperflow.core.assembly import Setup, setup_training
from hyperflow.core.data import Dataset
from hyperflow.core.pruning import peer_statuses
from hyperflow.search import hyperopt_records, local, workers
from hyperflow.search.space import config_at, contains, grid_points, to_vals
from hyperflow.search.stopping import Finished, StopRule
from hyperflow.search.trial import TrialRecord, TrialTask, lost_trial, run_trial

Trained = Callable[[], "tuple[Setup, dict[str, Any]] | None"]  # a finished trial's model, made on demand


def in_space(space: dict[str, Any], records: list[TrialRecord]) -> list[TrialRecord]:
    """The trials hyperopt learns from: those whose point the (possibly edited) space can produce."""
    return [r for r in records if contains(space, r.params)]


class SearchLoop:
    """The trials of one search after ``history`` (the trials a resume keeps, in trial order)."""

    def __init__(
        self,
        settings: SearchConfig,
        base: TrainConfig,
        space: dict[str, Any],
        dataset: Dataset,
        history: list[TrialRecord],
        *,
        at_once: int,
        where: tuple[str, str],
        stop: StopRule,
        on_finished: Callable[[TrialRecord, Trained], None],
        highest_number: int = -1,
        send: Callable[..., Any] | None = None,
        pool: workers.WorkerPool | None = None,
        spark_session: Any = None,
    ) -> None:
        """``where``: the experiment and search run the trials log into (handed to the trials, not used here);
        ``send``: how a trial in this process sends its calls; ``pool``: workers started early, else made here."""
        self.settings, self.base, self.space, self.dataset = settings, base, space, dataset
        self.records = list(history)
        self.at_once, self.where, self.stop, self.on_finished = at_once, where, stop, on_finished
        self.highest_number = highest_number  # of every trial run of this search, those killed included
        self.send, self.pool, self.spark_session = send, pool, spark_session
        self.best = min((r.loss for r in history if r.status == names.TRIAL_OK and r.loss is not None), default=None)

    def run(self) -> bool:
        """Run the trials; True when Spark cancelled the search at its own timeout."""
        s = self.settings
        if s.strategy == "grid":
            self._run_grid()
        elif self.on_spark:
            return self._run_spark()
        else:
            self._run_hyperopt()
        return False

    @property
    def on_spark(self) -> bool:
        """The trials run as Spark tasks (hyperopt's suggestions; a grid runs here)."""
        return self.settings.backend == "spark" and self.settings.strategy != "grid"

    @property
    def on_workers(self) -> bool:
        """The trials run at once on local worker processes."""
        return self.at_once > 1 and not self.on_spark

    def _next_number(self) -> int:
        """Trials run one at a time: a trial killed in flight is the last one, and its number (and
        suggestion) comes again. Trials run at once (workers, Spark) leave gaps; their numbers are not used
        again."""
        kept = max((r.number for r in self.records), default=-1) + 1
        at_once = self.settings.backend == "spark" or self.at_once > 1
        return max(kept, self.highest_number + 1) if at_once else kept

    def _task(self, number: int, base: TrainConfig | None = None) -> TrialTask:
        s = self.settings
        keep = peer_statuses(s.pruner)
        pruner = (s.pruner, s.min_epochs, s.reduction_factor, s.prune_startup_trials, s.prune_patience)
        history = [r.history for r in self.records if r.status in keep]
        return TrialTask(base or self.base, pruner, *self.where, number, history, self.stop.deadline)

    def _finished(self) -> list[Finished]:
        return [Finished(r.status == names.TRIAL_FAILED, r.loss, r.reason) for r in self.records]

    def _record(self, record: TrialRecord, trained: Trained) -> None:
        self.records.append(record)
        if record.status == names.TRIAL_OK and record.loss is not None:
            self.best = record.loss if self.best is None else min(self.best, record.loss)
        self.on_finished(record, trained)

    def _run_here(self, point: dict[str, Any], number: int | None = None) -> TrialRecord:
        """Run one point in this process and record it."""
        number = self._next_number() if number is None else number
        record, setup = run_trial(self._task(number), point, self.dataset, self.send)
        state = (lambda: copy.deepcopy(setup.trainer.model.state_dict())) if setup is not None else None
        self._record(record, lambda: None if state is None else (setup, state()))
        return record

    # ------------------------------------------------------------------------------------- workers
    @contextmanager
    def _workers(self) -> Iterator[local.Dispatch]:
        """``at_once`` worker processes running trials (each with its share of the cores as torch threads);
        on Ctrl-C, SIGTERM or a failure, the trials in flight are stopped and end KILLED before it goes on."""
        pool, self.pool = self.pool or workers.WorkerPool(self.at_once), None
        base = self.base.replace(threads=machine.threads_per_trial(self.at_once))
        keep = peer_statuses(self.settings.pruner)
        points: dict[int, dict[str, Any]] = {}

        def start(number: int, point: dict[str, Any]) -> None:
            self.highest_number = max(self.highest_number, number)
            task = self._task(number, base)
            task.history = workers.PeerCurves(task.history, pool.curves)
            pool.submit(number, task, point, math.inf if self.best is None else self.best)
            points[number] = point

        def collect(block: bool, timeout: float | None = None) -> list[tuple[int, TrialRecord]]:
            done, failures = [], []
            for number, future in pool.finished(block, timeout):
                point = points.pop(number)
                try:
                    record, state = future.result()
                except BrokenProcessPool:  # its worker died: the trial fails, the others go on
                    record, state = lost_trial(*self.where, number, point, pool.deaths.pop(future)), None
                except BaseException as exc:  # a store failure, or a trial stopped by an interrupt
                    failures.append(exc)
                    continue
                self._record(record, lambda r=record, s=state: None if s is None else (self._setup(r), s))
                if record.status in keep:
                    pool.add_curve(record.history)
                done.append((number, record))
            if failures:
                raise failures[0]
            return done

        try:
            yield local.Dispatch(lambda: pool.free, start, collect, lambda: len(pool.running))
        except BaseException:
            pool.interrupt()
            pool.collect_stopped(collect)
            pool.close(kill=bool(pool.running), check=False)
            raise
        pool.close()

    def _setup(self, record: TrialRecord) -> Setup:
        return setup_training(config_at(self.base, record.params), dataset=self.dataset, train=False)

    # ------------------------------------------------------------------------------------- loops
    def _run_grid(self) -> None:
        done = [r.params for r in self.records]
        budget = max(0, self.settings.max_evals - len(self.records))
        todo = [p for p in grid_points(self.space) if p not in done][:budget]
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

    def _hyperopt_trials(self, trials: Any) -> tuple[Any, int]:
        """``trials`` filled with the history in the space and the presets still to run queued; and the
        number of trials kept but not shown to hyperopt (they count toward ``max_evals`` too)."""
        history = [(r.number, to_vals(self.space, r.params), r) for r in in_space(self.space, self.records)]
        trials = hyperopt_records.fill(trials, history, self._next_number())
        outside = len(self.records) - len(trials.trials)
        # presets run first, so a resume among them caps the rest as the first run did
        presets = hyperopt_records.preset_points(self.space, self.records if self.settings.seed_presets else None)
        for vals in presets[: max(0, self.settings.max_evals - len(self.records) - 1)]:
            hyperopt_records.queue(trials, vals)
        return trials, outside

    def _suggest(self) -> Any:
        s = self.settings
        return hyperopt_records.algo(s.strategy, s.n_startup_jobs, s.gamma, self.base.seed, self.stop.check)

    def _run_hyperopt(self) -> None:
        trials, outside = self._hyperopt_trials(local.new_trials())
        budget, seed = self.settings.max_evals - outside, self.base.seed
        if self.at_once == 1:
            local.search_locally(self._run_here, self.space, trials, self._suggest(), budget, seed)
            return
        with self._workers() as dispatch:
            local.search_in_parallel(dispatch, self.space, trials, self._suggest(), budget, seed)

    def _run_spark(self) -> bool:
        """Trials as Spark tasks (their records are read back by the caller); True when SparkTrials cancelled
        the search at its own timeout."""
        from hyperflow.search.spark import SparkBackend

        s = self.settings
        backend = SparkBackend(s.spark_master, self.at_once, self.spark_session, self.stop.deadline)
        trials, outside = self._hyperopt_trials(backend.new_trials())
        template = self._task(0, self.base.replace(threads=backend.threads))
        return backend.search(
            template,
            self._next_number(),
            self.space,
            trials,
            self._suggest(),
            s.max_evals - outside,
            self.base.seed,
            self.base.progress,
        )
