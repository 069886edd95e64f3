"""A user's own function as a search's objective (``objective=package.module:function``, or a callable given to
``hyperflow.search``): each trial calls ``fn(params, trial)`` in its own child run of the search, which is the
active MLflow run while the function runs (``mlflow.log_metric``, ``mlflow.sklearn.log_model`` log into it).

``trial.report(step, value, **metrics)`` logs ``value`` (as metric ``value``) and the other metrics at ``step``,
sent in batches, and raises ``hyperflow.TrialPruned`` once the pruner, the deadline or the budget stops the
trial. The function returns the loss to minimise: a number, or a dict holding it under ``loss`` (its other
numbers are logged as the trial's metrics). A pruned trial that lets TrialPruned through ends at the best value
it reported. Any other exception fails the trial with its one line (the search goes on); a store failure
stops the search. Runs here, on a worker process (the function is imported or unpickled there) or on Spark.
"""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Callable
from typing import Any

from hyperflow import names, tracking
from hyperflow.core.factory import import_factory
from hyperflow.engine.trial import Trial, TrialFailed, TrialPruned
from hyperflow.tracking import search_store, worker_environment
from hyperflow.tracking.faults import portable

TRIAL_FLUSH_SECS = 5.0  # the values a trial reports are sent this often at most, and with its results
_imported: dict[str, Callable[..., Any]] = {}  # per process: the functions imported by name


def import_objective(spec: str) -> Callable[..., Any]:
    """Import ``package.module:function`` as ``model=`` is imported (the current directory is searched too); a
    module or function that does not exist is one line (:class:`UsageError`). Imported once per process."""
    if spec not in _imported:
        _imported[spec] = import_factory(spec, "objective")
    return _imported[spec]


def spec_of(function: Callable[..., Any]) -> str:
    """The ``module:qualname`` a callable is recorded as (what a resume from the command line imports)."""
    module = getattr(function, "__module__", None) or "__main__"
    return f"{module}:{getattr(function, '__qualname__', type(function).__name__)}"


def not_portable(function: Callable[..., Any]) -> str:
    """Why worker processes (trials at once) cannot get the function, or '': it must pickle, and not live in
    ``__main__`` (a notebook, or the script being run), which the workers do not import."""
    name = spec_of(function)
    if getattr(function, "__module__", None) == "__main__":
        return (
            f"objective {name} is defined in __main__ (this notebook or script), which worker processes cannot "
            f"import: move it to a module (my_objective.py) and import it from there"
        )
    try:
        pickle.dumps(function)
    except Exception as exc:
        return (
            f"objective {name} cannot be pickled ({type(exc).__name__}: {exc}) for the worker processes: use a "
            f"function defined at the top of a module"
        )
    return ""


def loss_of(returned: Any) -> tuple[float, dict[str, float]]:
    """The loss a function returned, and the other numbers of a dict it returned; a TrialFailed saying what is
    wrong with anything else."""
    extra: dict[str, float] = {}
    if isinstance(returned, dict):
        if names.OBJECTIVE_LOSS not in returned:
            raise TrialFailed(f"the objective returned a dict without a '{names.OBJECTIVE_LOSS}' key")
        extra = {str(k): float(v) for k, v in returned.items() if k != "loss" and _is_number(v)}
        returned = returned[names.OBJECTIVE_LOSS]
    if not _is_number(returned):
        raise TrialFailed(f"the objective returned {type(returned).__name__}, not a number (the loss to minimise)")
    loss = float(returned)
    if not math.isfinite(loss):
        raise TrialFailed(f"the objective returned a non-finite loss ({loss})")
    return loss, extra


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, (str, bytes))


def _stops_the_search(exc: BaseException) -> bool:
    """A store failure ends the whole search (the next trial would meet it too); anything else the function
    raises fails only its trial (``max_consecutive_failures`` ends a search whose every trial fails)."""
    return tracking.is_store_error(exc, os_errors=False)


class _Failed(Exception):
    """Ends a failed trial's run as FAILED; caught right outside it."""


class FunctionObjective:
    """Call ``function`` for each trial, in a child run of search run ``parent_id``. ``where``: ``here``, ``worker``
    or ``spark``. Picklable: a function imported from ``spec`` (``objective=``) travels as that name and is
    imported where the trial runs, any other pickled; the tracking settings travel in memory."""

    def __init__(
        self, function: Callable[..., Any], spec: str, experiment_id: str, parent_id: str, where: str = "here"
    ) -> None:
        self.function, self.spec, self.experiment_id, self.parent_id = function, spec, experiment_id, parent_id
        self.where = where
        self.env = worker_environment.executor_environment()

    def __getstate__(self) -> dict[str, Any]:
        by_name = _imported.get(self.spec) is self.function  # objective=...: the worker imports it by name
        return {**self.__dict__, "function": None} if by_name else self.__dict__

    def _function(self) -> Callable[..., Any]:
        return self.function if self.function is not None else import_objective(self.spec)

    def warm(self) -> None:
        """On a worker, before its first trial: the store opened and the function imported."""
        worker_environment.use_environment(self.env)
        worker_environment.open_store(self.experiment_id)
        self._function()

    def settle(self) -> str:
        return ""  # every call is sent as the trial makes it: nothing is left in flight

    def lost(self, trial: Trial, reason: str) -> None:
        """A trial whose worker process died: its run, if it was created, ends FAILED with the reason."""
        trial.run_id = search_store.end_lost_trial(self.experiment_id, self.parent_id, trial.number, reason)

    def __call__(self, params: dict[str, Any], trial: Trial) -> float:
        if self.where != "here":
            worker_environment.use_environment(self.env)
        try:
            with search_store.quiet_logs():
                return self._run(self._function(), params, trial)
        except TrialFailed:
            raise
        except Exception as exc:
            failure = portable(exc)  # a store failure travels as one line
            if failure is exc:
                raise
            raise failure from None

    def _run(self, function: Callable[..., Any], params: dict[str, Any], trial: Trial) -> float:
        number = trial.number
        tags = {
            names.TRIAL_NUMBER: str(number),
            names.TRIAL_PARAMS: json.dumps(params, default=str),
            names.SEARCH_RUN_ID: self.parent_id,
        }
        failed: TrialFailed | None = None
        loss, extra = math.inf, {}
        try:
            with tracking.active_child_run(
                names.ROLE_TRIAL, self.experiment_id, self.parent_id, f"trial-{number:03d}", tags
            ) as run_id:
                trial.run_id = run_id
                logged = {**{k: str(v) for k, v in params.items()}, "trial_number": str(number)}
                metrics = tracking.MlflowMetrics(run_id, TRIAL_FLUSH_SECS, flush_at_end=False, params=logged)
                metrics.on_train_start(None)
                trial.on_report = lambda step, value, more: metrics.on_epoch_end(
                    None, step, {names.OBJECTIVE_VALUE: value, **more}
                )
                try:
                    try:
                        loss, extra = loss_of(function(dict(params), trial))
                    except TrialPruned:  # let through: pruned at the best value it reported
                        loss = min(trial.values, default=math.inf)
                        if not math.isfinite(loss):
                            raise TrialFailed(
                                f"pruned ({trial.stop_reason}) before it reported a finite value"
                            ) from None
                except TrialFailed as exc:
                    failed = exc
                except Exception as exc:  # whatever the function raised fails the trial: the search goes on
                    if _stops_the_search(exc):
                        raise
                    failed = TrialFailed(f"{type(exc).__name__}: {exc}"[:500])
                finally:
                    trial.on_report = None
                status = (
                    names.TRIAL_FAILED if failed else names.TRIAL_PRUNED if trial.should_prune() else names.TRIAL_OK
                )
                reason = failed.reason if failed else trial.stop_reason
                final = {} if failed else {names.OBJECTIVE_LOSS: loss, **extra}
                search_store.log_trial_end(
                    run_id, final, metrics, number, status, reason, trial.values, None if failed else loss
                )
                if failed:
                    raise _Failed
        except _Failed:
            raise failed from None
        return loss
