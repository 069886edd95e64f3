"""A search: one parent run, one child run per trial, hyperopt (or the grid) choosing the points.

The orchestration: prepare (every input check before a run is written), resume (the history rebuilt from
the trials whose results reached MLflow, the source of truth: a kill loses at most the trials in flight),
the trial loop on a backend (grid and ``local`` here, ``spark`` in :mod:`hyperflow.search.spark`), the stop
rule (:mod:`hyperflow.search.stopping`), then the end (:mod:`hyperflow.search.finish`). A trial runs in
:mod:`hyperflow.search.trial`; hyperopt's records are handled in :mod:`hyperflow.search.hyperopt_records`;
every MLflow call goes through :mod:`hyperflow.tracking.search_store` or the ``hyperflow.tracking`` API.

A resumed search continues the search it resumes: trial numbers are hyperopt ids and each id's suggestion is
seeded from (``seed``, id) alone, so it proposes what the uninterrupted search would have proposed next. The
literature presets not yet run are queued again when a search was interrupted among them.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import yaml

from hyperflow import machine, names, tracking
from hyperflow.config import SearchConfig, TrainConfig
from hyperflow.config.search import trials_at_once
from hyperflow.core.assembly import Setup, load_data, setup_training
from hyperflow.core.pruning import peer_statuses
from hyperflow.errors import SearchFailed, UsageError
from hyperflow.runtime import processes
from hyperflow.search import finish, hyperopt_records, local, resume, workers
from hyperflow.search.lock import SearchLock
from hyperflow.search.outcome import SearchOutcome, store_failure
from hyperflow.search.resume import RESUMABLE_SEARCH, RESUMABLE_TRAIN
from hyperflow.search.space import (
    check_auto_lrs,
    check_grid,
    complete_point,
    config_at,
    contains,
    default_space_path,
    grid_points,
    load_space,
    probe_points,
    to_vals,
    validate_space,
)
from hyperflow.search.stopping import Finished, StopRule
from hyperflow.search.trial import TrialRecord, TrialTask, lost_trial, run_trial
from hyperflow.tracking import new_store, search_store

__all__ = ["SearchFailed", "SearchOutcome", "SearchRunner", "TrialRecord"]

FULL_CHECK_POINTS = 5_000  # a grid up to this size has every combination checked before the first trial


class SearchRunner:
    """Runs a search for ``base`` training settings over a YAML space, tracked in MLflow."""

    artifact_uri = ""

    def __init__(
        self,
        search: SearchConfig,
        base: TrainConfig,
        spark_session: Any = None,
        given: Collection[str] | None = None,
        parent_run_id: str | None = None,
    ) -> None:
        """``given``: the settings the user set (command line, config file); a resume takes every other one
        from the search it resumes. Without it, a setting counts as given when it differs from its default.
        ``parent_run_id``: the active run a new search's run nests under (a retrain's)."""
        self.search, self.spark_session, self.parent_run_id = search, spark_session, parent_run_id
        self.given = None if given is None else set(given)
        self.base = base.replace(log_model=False, model_name=None, progress=False, tensorboard=False)
        self.records: list[TrialRecord] = []
        self.kept: finish.Kept | None = None  # the best trial of this session, in memory
        self.parent_id = ""
        self.experiment_id = ""
        self.deadline: float | None = None  # wall clock
        self.stop = StopRule.of(search, None)
        self.calls = tracking.BackgroundCalls()  # trials run in this process: their calls, on a thread
        self.progress: search_store.Progress | None = None
        self.resumed: Any = None  # the search run a resume continues (as read before it is reopened)
        self.changed: dict[str, str] = {}  # settings a resume changed: key -> new value
        self.space_text = ""
        self.space_edited = False
        self.highest_number = -1  # of every trial run of this search, those killed included
        self.at_once = 1  # trials run at once (parallelism, resolved)
        self.pool: workers.WorkerPool | None = None  # started early, used by _workers
        self.lock: SearchLock | None = None  # held from the run's start (a resume: before the reopening) to its end

    @property
    def stop_reason(self) -> str:
        return self.stop.reason

    # ------------------------------------------------------------------------------------- set-up
    def prepare(self) -> None:
        """Everything that can fail on bad input, before any run is written (a resume reads its run only)."""
        if self.search.backend == "spark":
            from hyperflow.search import spark

            spark.check_available(self.spark_session)
        if self.search.resume:
            self.resumed = resume.search_run(self.search.resume)
            self.search, self.base, self.changed = resume.recorded_settings(
                self.resumed, self.search, self.base, self.given
            )
        check_auto_lrs(self.base)
        if self.search.backend == "local" and self.search.parallelism != 1 and processes.available():
            processes.prestart()  # the child processes' imports overlap the checks below
        self.dataset = load_data(self.base)
        if self.resumed is not None:
            resume.check_data(self.resumed, self.search.resume, self.base.data, self.dataset)
        self.space = self._load_space()
        self._check_space()
        new_store.prepare()  # a new sqlite store from the cached empty one (see hyperflow.tracking.new_store)
        tracking.check_writable(self.base.experiment, run_id=self.search.resume)  # e.g. a file named mlruns
        self.at_once = self._trials_at_once()

    def _lock(self) -> None:
        """One process per search run: a resume takes the search's lock (exit 4 while a live process holds it),
        a new search writes it with its run (:meth:`_run_tracked`)."""
        if self.search.resume is None:
            self.lock = SearchLock()
            return
        self.lock = SearchLock(self.search.resume).acquire()
        taken = self.lock.takeover_message()
        if taken:  # a dead process's lock: say whose
            print(f"hyperflow search: {taken}", file=sys.stderr, flush=True)

    def _trials_at_once(self) -> int:
        """``parallelism`` resolved (:func:`trials_at_once`: ``auto`` is the CPUs this process may use, or one
        trial per GPU), then capped to the workers this machine's memory holds, each with its copy of the data
        (on this machine only: Spark's ``local`` master or the local backend); a cap is said in one line."""
        s = self.search
        on_gpu = self.base.device.startswith("cuda") or (self.base.device == "auto" and torch.cuda.is_available())
        at_once = trials_at_once(s, gpus=1 if on_gpu else 0)  # the trials all train on the one device given
        here = s.backend == "local" or (self.spark_session is None and (s.spark_master or "local").startswith("local"))
        if not here:
            return at_once  # a cluster's executors: their memory is the cluster's
        available, source = machine.available_memory()
        at_once, note = machine.memory_cap(at_once, available, self.dataset.memory_bytes, source)
        if note:
            print(f"hyperflow search: {note}", file=sys.stderr, flush=True)
        return at_once

    def _load_space(self) -> dict[str, Any]:
        """The space file given, else (resuming) the space the search ran with, else the task's default."""
        recorded = self.resumed.data.tags.get(names.SPACE) if self.resumed is not None else None
        if self.search.space:
            self.space_path = Path(self.search.space)
            space = load_space(self.space_path)  # your space: what it sets wins over the command line
        elif recorded:
            self.space_path = None
            space = yaml.safe_load(recorded)
            validate_space(space)
        else:  # the shipped space; a setting the user gave pins its dimension (epochs=5: every trial 5 epochs)
            self.space_path = default_space_path(self.dataset.task)
            given = {k for k in self.given or () if k in TrainConfig.__dataclass_fields__}
            space = {k: v for k, v in load_space(self.space_path).items() if k not in given}
            if not space:
                raise UsageError(
                    f"every dimension of the shipped search space is set ({', '.join(sorted(given))}): "
                    f"nothing is left to search; drop one, or run hyperflow train"
                )
        self.space_text = yaml.safe_dump(space, sort_keys=False)
        if recorded and yaml.safe_load(recorded) != space:
            self.space_edited = True
        return space

    def _check_space(self) -> None:
        """Every value the space can give makes a valid configuration, before the first trial: each choice
        value and both ends of each range, in every branch (and every combination of a small grid)."""
        size = check_grid(self.space) if self.search.strategy == "grid" else None
        points = list(probe_points(self.space))
        if size is not None and size <= FULL_CHECK_POINTS:
            points += grid_points(self.space)
        for point in points:
            self._config(point)
        setup_training(self._config(points[0]), dataset=self.dataset, train=False)

    def _config(self, point: dict[str, Any]) -> TrainConfig:
        return config_at(self.base, point)

    # ------------------------------------------------------------------------------------- main
    def run(self) -> SearchOutcome:
        store_failed = False
        try:
            self.prepare()
            # MLflow logs a traceback per database error and hyperopt a line per exception in the objective: a
            # failure is reported once, below, in one line
            try:
                with search_store.quiet_logs("hyperopt.fmin"):
                    return self._run()
            except Exception as exc:
                if isinstance(exc, (SearchFailed, UsageError)) or not tracking.is_store_error(exc):
                    raise
                store_failed = True
                raise SearchFailed(
                    store_failure(exc, self.artifact_uri, self.parent_id or self.search.resume)
                ) from None
        finally:
            if not store_failed:  # a store that failed is not asked again (a server gone: retries for minutes)
                self._unlock()

    def _unlock(self) -> None:
        """Release the search's lock once its run has ended (best effort: a lock left behind names a process
        that is gone, and the next resume takes it over: at once on this host, elsewhere when its lease ends)."""
        if self.lock is None or not self.lock.run_id:  # a new search whose run was never created: nothing held
            return
        try:
            self.lock.release()
        except Exception as exc:  # the store failed: the search's own line says so, once
            logging.getLogger(__name__).debug("could not release the lock of search run %s: %s", self.lock.run_id, exc)

    def _run(self) -> SearchOutcome:
        try:
            self._lock()  # the first write: a store that fails here fails as the search's other writes do
            return self._run_tracked(fresh=self.resumed is None)
        finally:
            if self.pool is not None:  # a failure before the trials started
                self.pool.close(kill=True, check=False)
                self.pool = None

    def _run_tracked(self, fresh: bool) -> SearchOutcome:
        with tracking.tracked_run(
            names.ROLE_SEARCH,
            experiment=self.base.experiment,
            run_id=self.search.resume,
            parent_run_id=self.parent_run_id if self.search.resume is None else None,
            run_name=tracking.unique_run_name("search", self.dataset.name) if fresh else None,
            tags={
                **tracking.run_tags(self.dataset),
                **({names.SEARCH_LOCK: self.lock.value()} if fresh and self.lock else {}),
            },
        ) as parent:
            self.parent_id, self.experiment_id = parent.info.run_id, parent.info.experiment_id
            if fresh and self.lock is not None:
                self.lock.bind(self.parent_id)
            self.artifact_uri = parent.info.artifact_uri
            self.progress = search_store.Progress(self.parent_id, self.calls.submit)
            if self.search.backend == "local" and self.at_once > 1:  # workers start while the settings are recorded
                self.pool = workers.WorkerPool(self.at_once, search_store.executor_environment())
                self.pool.warm(self._workers_base(), self.experiment_id)
            self._record_settings(fresh)
            if not fresh:
                self._read_children()
            self._lr_bounds()
            s = self.search
            if s.timeout:
                self.deadline = time.time() + s.timeout
            self.stop = StopRule.of(s, self.deadline)
            timed_out = False
            try:
                if s.strategy == "grid":
                    self._run_grid()
                elif s.backend == "spark":
                    timed_out = self._run_spark()
                else:
                    self._run_local()
            finally:
                try:
                    self._log_progress([], force=True)
                finally:
                    self.calls.close()  # every trial's results and end are in MLflow before the search goes on
            self.records.sort(key=lambda r: r.number)  # trials run at once finish out of order
            stop_reason = self.stop.final(timed_out)
            search_store.set_stop_reason(stop_reason)
            outcome = SearchOutcome(
                self.parent_id, self.experiment_id, self.records, None, stop_reason, at_once=self.at_once
            )
            return finish.finish(outcome, s, self.dataset, self.base.seed, self._config, self.kept)

    def _record_settings(self, fresh: bool) -> None:
        """A new search logs every setting as a param (MLflow keeps params as first written). The settings a
        resume may change live in tag ``hyperflow.settings`` (their current values), and each change is kept
        as param ``resume.<n>.<key>``, so that any number of resumes can change them."""
        s = self.search
        settings = {
            **{k: str(getattr(s, k)) for k in RESUMABLE_SEARCH},
            **{k: str(getattr(self.base, k)) for k in RESUMABLE_TRAIN},
        }
        tags = {names.SETTINGS: json.dumps(settings)}
        if len(self.space_text) <= 7000:
            tags[names.SPACE] = self.space_text
        if fresh:
            params = {**{k: str(v) for k, v in vars(s).items() if k != "resume"}, **self.base.to_params()}
            search_store.record_new_search(self.parent_id, params, tags, self.space_path, self.dataset)
            return
        n = int(self.resumed.data.tags.get(names.RESUMES, "0")) + 1
        params = {f"resume.{n}.{k}": v for k, v in self.changed.items()}
        if self.space_edited:
            params[f"resume.{n}.space"] = str(self.space_path)
        search_store.record_resume(self.parent_id, n, tags, params, self.space_text if self.space_edited else None)

    def _lr_bounds(self) -> None:
        """``lr_bounds=auto``: the LR range test once (a child run of the search), lr searched within its range."""
        if self.search.lr_bounds != "auto" or "lr" not in self.space:
            return
        params = search_store.run_params(self.parent_id)
        if "lr_bounds.low" in params:  # a resumed search keeps the bounds it found
            low, high = float(params["lr_bounds.low"]), float(params["lr_bounds.high"])
        else:
            point = complete_point(self.space, {})
            point.pop("lr", None)
            setup = setup_training(self._config({**point, "lr": 1e-3}), dataset=self.dataset)
            _, finder = tracking.lr_range_test_run(setup, self.parent_id)
            low, high = finder.lr_range_
            if self.base.schedule == "onecycle":
                high *= 3  # the one-cycle peak may sit closer to the cliff: it is held only briefly
            tracking.log_params(self.parent_id, {"lr_bounds.low": str(low), "lr_bounds.high": str(high)})
        self.space = {**self.space, "lr": {"type": "loguniform", "low": low, "high": high}}

    # ------------------------------------------------------------------------------------- history
    def _read_children(self) -> None:
        """The trials whose results reached MLflow (see :func:`search_store.read_trials`)."""
        rows, highest = search_store.read_trials(self.experiment_id, self.parent_id)
        self.records = [TrialRecord(**row) for row in rows]
        self.highest_number = max(self.highest_number, highest)

    def _in_space(self) -> list[TrialRecord]:
        """The trials hyperopt learns from: those whose point the (possibly edited) space can produce."""
        return [r for r in self.records if contains(self.space, r.params)]

    def _next_number(self) -> int:
        """Trials run one at a time: a trial killed in flight is the last one, and its number (and
        suggestion) comes again. Trials run at once (workers, Spark) leave gaps; their numbers are not used
        again."""
        kept = max((r.number for r in self.records), default=-1) + 1
        return max(kept, self.highest_number + 1) if self.search.backend == "spark" or self.at_once > 1 else kept

    # ------------------------------------------------------------------------------------- trials
    def _task(self, number: int, base: TrainConfig | None = None) -> TrialTask:
        s = self.search
        keep = peer_statuses(s.pruner)
        pruner = (s.pruner, s.min_epochs, s.reduction_factor, s.prune_startup_trials, s.prune_patience)
        return TrialTask(
            base or self.base,
            pruner,
            self.experiment_id,
            self.parent_id,
            number,
            [r.history for r in self.records if r.status in keep],
            self.deadline,
        )

    def run_trial(self, point: dict[str, Any], number: int | None = None) -> TrialRecord:
        """Run one point in this process (its results and end queued on the background calls) and record it."""
        number = self._next_number() if number is None else number
        record, setup = run_trial(self._task(number), point, self.dataset, self.calls.submit)
        self._record(record, lambda: (setup, copy.deepcopy(setup.trainer.model.state_dict())))
        return record

    def _record(self, record: TrialRecord, trained: Callable[[], tuple[Setup, dict[str, Any]] | None]) -> None:
        """Keep a finished trial: its record, its model when it is the best so far (``trained()``: the setup
        and its weights), the parent's progress."""
        if record.status == names.TRIAL_OK and (self.kept is None or record.loss < self.kept.loss):
            model = trained()
            if model is not None:
                self.kept = finish.Kept(record.loss, record.number, *model)
        self.records.append(record)
        self._log_progress([record])

    # ------------------------------------------------------------------------------------- workers
    @contextmanager
    def _workers(self) -> Iterator[local.Dispatch]:
        """``at_once`` worker processes running trials (each with its share of the cores as torch threads);
        on Ctrl-C, SIGTERM or a failure, the trials in flight are stopped and end KILLED before it goes on."""
        pool, self.pool = self.pool or workers.WorkerPool(self.at_once, search_store.executor_environment()), None
        base = self._workers_base()
        keep = peer_statuses(self.search.pruner)

        points: dict[int, dict[str, Any]] = {}

        def start(number: int, point: dict[str, Any]) -> None:
            self.highest_number = max(self.highest_number, number)
            task = self._task(number, base)
            task.history = workers.PeerCurves(task.history, pool.curves)
            pool.submit(number, task, point, self.kept.loss if self.kept is not None else math.inf)
            points[number] = point

        def collect(block: bool, timeout: float | None = None) -> list[tuple[int, TrialRecord]]:
            done, failures = [], []
            for number, future in pool.finished(block, timeout):
                point = points.pop(number)
                try:
                    record, state = future.result()
                except BrokenProcessPool:  # its worker died: the trial fails, the others go on
                    death = pool.deaths.pop(future)
                    record, state = lost_trial(self.experiment_id, self.parent_id, number, point, death), None
                except BaseException as exc:  # a store failure, or a trial stopped by an interrupt
                    failures.append(exc)
                    continue
                self._record(
                    record,
                    lambda record=record, state=state: (
                        None
                        if state is None
                        else (setup_training(self._config(record.params), dataset=self.dataset, train=False), state)
                    ),
                )
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
            try:  # a trial stopped before its run could be ended, or past the grace period, ends KILLED here
                search_store.read_trials(self.experiment_id, self.parent_id)
            except Exception:
                pass  # the store failed: a resume ends them
            raise
        pool.close()
        # a worker that died between trials lost its last trial's closing calls: the search has them
        search_store.end_unended_trials(self.experiment_id, self.parent_id, self.records)

    def _workers_base(self) -> TrainConfig:
        """The trials' settings in a worker: its share of the cores as torch threads."""
        return self.base.replace(threads=machine.threads_per_trial(self.at_once))

    def _log_progress(self, new: list[TrialRecord], force: bool = False) -> None:
        """The parent's ``best_val_loss`` after each trial, sent in batches every few seconds. The step counts the
        trials finished before it (the trial number, for trials run one at a time): trials run at once finish
        out of number order, and the curve must still only go down."""
        position = {id(r): i for i, r in enumerate(self.records)}
        for record in new:
            step = position[id(record)]
            ok = [r.loss for r in self.records[: step + 1] if r.status == names.TRIAL_OK and r.loss is not None]
            if ok:
                self.progress.add(min(ok), step)
        self.progress.flush(force)

    def _run_grid(self) -> None:
        done = [r.params for r in self.records]
        todo = [p for p in grid_points(self.space) if p not in done][
            : max(0, self.search.max_evals - len(self.records))
        ]
        if self.at_once == 1:
            for point in todo:
                if self.stop.check(self._finished()):
                    return
                self.run_trial(point)
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

    def _finished(self) -> list[Finished]:
        return [Finished(r.status == names.TRIAL_FAILED, r.loss, r.reason) for r in self.records]

    def _hyperopt_trials(self, trials: Any) -> tuple[Any, int]:
        """``trials`` filled with the history in the space and the presets still to run queued; and the
        number of trials kept in MLflow but not shown to hyperopt (they count toward ``max_evals`` too)."""
        history = [(r.number, to_vals(self.space, r.params), r) for r in self._in_space()]
        trials = hyperopt_records.fill(trials, history, self._next_number())
        outside = len(self.records) - len(trials.trials)
        # presets run first, so a resume among them caps the rest as the first run did
        for vals in self._preset_points()[: max(0, self.search.max_evals - len(self.records) - 1)]:
            hyperopt_records.queue(trials, vals)
        return trials, outside

    def _suggest(self) -> Any:
        s = self.search
        return hyperopt_records.algo(s.strategy, s.n_startup_jobs, s.gamma, self.base.seed, self.stop.check)

    def _run_local(self) -> None:
        trials, outside = self._hyperopt_trials(local.new_trials())
        if self.at_once == 1:
            local.search_locally(
                self.run_trial, self.space, trials, self._suggest(), self.search.max_evals - outside, self.base.seed
            )
            return
        with self._workers() as dispatch:
            local.search_in_parallel(
                dispatch, self.space, trials, self._suggest(), self.search.max_evals - outside, self.base.seed
            )

    def _run_spark(self) -> bool:
        """Trials as Spark tasks; the records are then read back from MLflow (children still RUNNING, i.e.
        cancelled, end KILLED). True when SparkTrials cancelled the search at its own timeout."""
        from hyperflow.search.spark import SparkBackend

        s = self.search
        backend = SparkBackend(s.spark_master, self.at_once, self.spark_session, self.deadline)
        trials, outside = self._hyperopt_trials(backend.new_trials())
        template = self._task(0, self.base.replace(threads=backend.threads))
        try:
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
        finally:
            known = {r.run_id for r in self.records}
            self._read_children()
            self._log_progress([r for r in self.records if r.run_id not in known])

    def _preset_points(self) -> list[dict[str, list]]:
        return hyperopt_records.preset_points(self.space, self.records if self.search.seed_presets else None)
