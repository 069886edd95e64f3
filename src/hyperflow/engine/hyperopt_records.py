"""Everything that knows hyperopt's trial records and its ``algo`` protocol (hyperopt 0.3.0; the round trip is
pinned by tests/test_hyperopt_records.py): trial documents, a ``Trials`` filled from a search's history,
points queued as trials (the literature presets among them), the id of the trial in flight, results as hyperopt
wants them, the suggestion step (stop rule first, then one seeded suggestion per new id: hyperopt's ``tpe``
or ``rand``, or its TPE fitted BOHB's way on the highest budget with enough trials), ``fmin`` itself, and
fmin's loop with trials evaluated elsewhere (:func:`minimize_elsewhere`: hyperopt's ``FMinIter`` with its
evaluation step replaced), and fmin's progress context for trials that finish elsewhere (:class:`FinishedTrials`).
The internals it uses (``Trials._dynamic_trials``,
``_ids``, ``FMinIter.serial_evaluate``, ``Domain``, the documents' fields) are used nowhere else.

Over 300 lines on purpose: the one module that knows hyperopt's internals, so that a hyperopt release
that changes them is met here alone.

A trial's hyperopt id is its trial number, and the suggestion for id ``t`` is drawn with a seed derived from
(``seed``, ``t``) alone (:func:`trial_seed`): a history rebuilt from MLflow puts the generator exactly where
the uninterrupted search had it, so a resumed search proposes what that search would have proposed next
(for random search, always; for TPE, given the same results).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import numpy as np
from hyperopt import (
    JOB_STATE_DONE,
    JOB_STATE_NEW,
    JOB_STATE_RUNNING,
    STATUS_FAIL,
    STATUS_OK,
    Trials,
    fmin,
    rand,
    space_eval,
    tpe,
)
from hyperopt.base import Domain, spec_from_misc
from hyperopt.exceptions import AllTrialsFailed
from hyperopt.fmin import FMinIter
from hyperopt.utils import coarse_utcnow

from hyperflow.config import PRESETS
from hyperflow.engine.space_hyperopt import to_vals
from hyperflow.engine.space_points import complete_point, contains
from hyperflow.engine.stopping import Finished

PINNED_VERSION = "0.3.0"  # the record format below was read from this version's sources


def new_trials() -> Trials:
    return Trials()


def spark_trials(parallelism: int, timeout: float | None, session: Any) -> Any:
    """hyperopt's SparkTrials (its own ``timeout`` in seconds cancels the search)."""
    from hyperopt import SparkTrials

    return SparkTrials(parallelism=parallelism, timeout=timeout, spark_session=session)


def cancelled_at_timeout(trials: Any) -> bool:
    """SparkTrials cancelled the search at its own timeout."""
    return trials.fmin_cancelled_reason == "fmin run timeout"


def trial_seed(seed: int, tid: int) -> int:
    """The seed of the suggestion for hyperopt trial id ``tid``: a function of the search's seed and the id
    alone, so that a resumed search draws for its next trial what the uninterrupted one would have drawn
    (fmin's own ``rstate`` restarts from the seed on every call and would replay the first suggestions)."""
    return int(np.random.SeedSequence([abs(int(seed)), int(tid)]).generate_state(1)[0]) % (2**31 - 1)


def trial_doc(trials: Trials, tid: int, vals: dict[str, list], result: dict[str, Any]) -> dict[str, Any]:
    """A trial document for id ``tid`` at ``vals`` (label -> [value], or [] where a conditional leaves it out)."""
    misc = {
        "tid": tid,
        "cmd": ("domain_attachment", "FMinIter_Domain"),
        "workdir": None,
        "idxs": {k: [tid] if v else [] for k, v in vals.items()},
        "vals": vals,
    }
    return trials.new_trial_docs([tid], [None], [result], [misc])[0]


def result(loss: float | None, reason: str = "", **extra: Any) -> dict[str, Any]:
    """hyperopt's result of a finished trial: ok with its loss (a pruned trial reports the best val_loss it
    reached: a pessimistic but real observation, so TPE counts it among the bad points instead of ignoring
    it as it would a failure), else failed with the reason."""
    if loss is None:
        return {"status": STATUS_FAIL, "failure": reason, **extra}
    return {"status": STATUS_OK, "loss": loss, **extra}


def trial_result(record: Any) -> dict[str, Any]:
    """hyperopt's result of a finished :class:`~hyperflow.engine.trial.TrialRecord`: :func:`result`, plus (when
    it did not fail) its per-epoch val_loss ``history``, ``trial_status`` (ok or pruned) and trial ``number``,
    which pruning and the multi-fidelity sampler read."""
    if record.status == "failed" or record.loss is None:
        return result(None, record.reason, run_id=record.run_id, units=record.epochs, number=record.number)
    return result(
        record.loss,
        history=list(record.history),
        trial_status=record.status,
        run_id=record.run_id,
        units=record.epochs,
        number=record.number,
    )


def peer_curves(results: Iterable[dict[str, Any]], statuses: tuple[str, ...]) -> list[tuple[int, list[float]]]:
    """The (trial number, curve) of the finished trials among hyperopt's results whose status is in ``statuses``."""
    return [(r["number"], r["history"]) for r in results if r.get("trial_status") in statuses and "history" in r]


def fill(trials: Trials, history: Iterable[tuple[int, dict[str, list], Any]], next_id: int) -> Trials:
    """``trials`` holding ``history`` (tid, vals, TrialRecord) as if those trials had just run; new ids
    continue at ``next_id`` (ids below it are taken, whether or not their trial is shown)."""
    docs = [trial_doc(trials, tid, vals, trial_result(record)) for tid, vals, record in history]
    for doc in docs:
        doc["state"] = JOB_STATE_DONE
    if docs:
        trials.insert_trial_docs(docs)
        trials.refresh()
    trials._ids.update(range(next_id))
    return trials


def queue(trials: Trials, vals: dict[str, list]) -> None:
    """Queue a point as a new trial (fmin ignores ``points_to_evaluate`` once given ``trials``); queued trials
    count toward ``max_evals``, and fmin evaluates them when it has one of its own to add."""
    trials.insert_trial_docs([trial_doc(trials, trials.new_trial_ids(1)[0], vals, {"status": "new"})])
    trials.refresh()


def running_tid(trials: Trials | None) -> int | None:
    """The id of the trial fmin is evaluating now (one at a time in this process)."""
    if trials is None:
        return None
    return next((t["tid"] for t in reversed(trials._dynamic_trials) if t["state"] == JOB_STATE_RUNNING), None)


def finished(results: Iterable[dict[str, Any]]) -> list[Finished]:
    """The finished trials among hyperopt's results (``trials.results``), in trial order."""
    return [
        Finished(r["status"] == STATUS_FAIL, r.get("loss"), r.get("failure", ""), r.get("units", 0))
        for r in results
        if r.get("status") in (STATUS_OK, STATUS_FAIL)
    ]


def _curve(doc: dict[str, Any]) -> list[float]:
    """A finished trial's values, one per report (a trial that reported none: its loss, as one report)."""
    result = doc["result"]
    return list(result.get("history") or [result["loss"]])


def at_highest_budget(trials: Trials, enough: int) -> Trials | None:
    """The finished trials as BOHB's model sees them (Falkner et al., 2018): ranked by their value at the highest
    budget (the n-th report) that ``enough`` trials reached (their best up to it: the loss of one that ended there,
    a pruned one's included), then the trials stopped before it, the deeper first, each by its own loss (BOHB
    leaves them out: beside a pruner that keeps stopping what the model proposes, the model never learned it,
    and proposed those points again and again); the failed ones as they are. TPE reads only the order of the
    losses: each trial's loss here is its rank. None while fewer than ``enough`` trials have finished."""
    done = [doc for doc in trials.trials if doc["state"] == JOB_STATE_DONE]
    curves = {doc["tid"]: _curve(doc) for doc in done if doc["result"].get("status") == STATUS_OK}
    lengths = sorted((len(curve) for curve in curves.values()), reverse=True)
    if len(lengths) < max(1, enough):
        return None
    budget = lengths[max(1, enough) - 1]

    def order(doc: dict[str, Any]) -> tuple[int, float, int]:
        """(epochs short of the budget, value, id): trials at the budget first, by their value there."""
        curve, loss = curves[doc["tid"]], doc["result"]["loss"]
        value = min(curve[:budget]) if len(curve) > budget else loss
        return max(0, budget - len(curve)), value, doc["tid"]

    ranked = sorted((doc for doc in done if doc["tid"] in curves), key=order)
    rank = {doc["tid"]: float(i) for i, doc in enumerate(ranked)}
    view = Trials()
    docs = [
        trial_doc(
            view, doc["tid"], doc["misc"]["vals"], result(rank[doc["tid"]]) if doc["tid"] in rank else doc["result"]
        )
        for doc in done
    ]
    for doc in docs:
        doc["state"] = JOB_STATE_DONE
    view.insert_trial_docs(docs)
    view.refresh()
    return view


def multi_fidelity_suggest(
    new_ids: list, domain: Any, trials: Trials, seed: int, n_startup_jobs: int = 8, gamma: float = 0.5
) -> list:
    """hyperopt's ``algo`` with tpe.suggest's signature, BOHB's way: hyperopt's TPE fitted on the trials' values at
    the highest budget with ``n_startup_jobs`` observations (:func:`at_highest_budget`), so that pruned trials'
    partial curves inform the suggestions until enough trials have run to the end; random before that."""
    view = at_highest_budget(trials, n_startup_jobs)
    if view is None:
        return rand.suggest(new_ids, domain, trials, seed)
    return tpe.suggest(new_ids, domain, view, seed, n_startup_jobs=n_startup_jobs, gamma=gamma)


def algo(
    strategy: str, n_startup_jobs: int, gamma: float, seed: int, stop: Callable[[list[Finished]], str]
) -> Callable[..., list]:
    """hyperopt's ``algo``: ``stop`` first (on the whole history, a resumed search's too: a reason ends fmin
    cleanly after the trials in flight, hyperopt's protocol; ``early_stop_fn`` would hang SparkTrials), then one
    suggestion per new trial id, seeded by :func:`trial_seed`: hyperopt's ``tpe``, ``random`` or ``bohb``
    (:func:`multi_fidelity_suggest`)."""
    samplers = {"tpe": tpe.suggest, "bohb": multi_fidelity_suggest}
    one = rand.suggest
    if strategy in samplers:
        one = partial(samplers[strategy], n_startup_jobs=n_startup_jobs, gamma=gamma)

    def suggest(new_ids: list, domain: Any, trials: Any) -> list:
        return [doc for tid in new_ids for doc in one([tid], domain, trials, trial_seed(seed, tid))]

    def suggest_points(new_ids: list, domain: Any, trials: Any, _seed: int) -> list:
        if stop(finished(trials.results)):
            return []
        return suggest(new_ids, domain, trials)

    return suggest_points


def minimize(
    objective: Callable[[dict[str, Any]], dict[str, Any]],
    space: Any,
    trials: Trials,
    suggest: Callable[..., list],
    max_evals: int,
    seed: int,
    progressbar: bool | Callable[..., Any] = False,
) -> None:
    """``fmin`` up to ``max_evals`` trials in ``trials`` (those already in it count); ``progressbar``: fmin's
    progress context (:class:`FinishedTrials`), if any."""
    try:
        fmin(
            objective,
            space,
            algo=suggest,
            max_evals=max_evals,
            trials=trials,
            rstate=np.random.default_rng(seed),
            show_progressbar=progressbar,
            verbose=bool(progressbar),  # fmin shows no progress unless verbose
            return_argmin=False,
        )
    except AllTrialsFailed:  # hyperopt's way to say no trial finished; the records say why
        pass


class FinishedTrials:
    """fmin's progress context (``show_progressbar``: call it) for trials that finish elsewhere (Spark's): each
    update fmin makes hands the trials finished since to ``on_finished(number, status, loss, units)``;
    :meth:`finish`, once fmin has returned, those whose end came after its last update (fmin stops once the last
    ones are in)."""

    postfix = ""  # fmin sets it on the progress bar it is given

    def __init__(self, trials: Trials, on_finished: Callable[[int, str, float | None, int], None]) -> None:
        self.trials, self.on_finished = trials, on_finished
        self.seen = {doc["tid"] for doc in trials.trials if doc["state"] == JOB_STATE_DONE}  # a resumed search's

    @contextmanager
    def __call__(self, initial: int, total: int) -> Iterator[FinishedTrials]:
        yield self

    def update(self, _count: int) -> None:
        for doc in self.trials.trials:
            if doc["state"] != JOB_STATE_DONE or doc["tid"] in self.seen:
                continue
            self.seen.add(doc["tid"])
            r = doc["result"]
            status = r.get("trial_status", "failed" if r.get("status") == STATUS_FAIL else "ok")
            self.on_finished(r.get("number", doc["tid"]), status, r.get("loss"), r.get("units", 0))

    def finish(self) -> None:
        self.trials.refresh()
        self.update(0)


def preset_points(space: dict[str, Any], records: Sequence[Any] | None = ()) -> list[dict[str, list]]:
    """The literature presets that fit the space, as hyperopt ``vals`` (label -> [value] or [] when a
    conditional leaves it out); none when ``records`` is None (``seed_presets=false``). A resumed search
    queues those it has not run yet while its history holds presets only (it was interrupted among them),
    as the uninterrupted search would have run them."""
    if records is None:
        return []
    points, default = [], complete_point(space, {})
    for preset in PRESETS.values():
        point = complete_point(space, preset)  # nested keys too (sgd's momentum under optimizer)
        if point is not None and point != default and point not in points:  # the default point is no preset
            points.append(point)
    presets = [to_vals(space, point) for point in points]
    if not records:
        return presets
    inside = [r for r in records if contains(space, r.params)]
    done = [to_vals(space, r.params) for r in inside]
    if len(inside) < len(records) or any(vals not in presets for vals in done):
        return []  # past the presets (or an edited space): the suggestions go on
    return [vals for vals in presets if vals not in done]


class _ElsewhereIter(FMinIter):
    """hyperopt's fmin loop with an evaluation step that starts trials elsewhere instead of in this process:
    each new trial as soon as ``free()`` says a place is free, and it returns as soon as one is, so every
    suggestion is made just in time, knowing every finished trial and the trials in flight (trial documents
    in state RUNNING, which a sampler can treat as pending points)."""

    def __init__(self, free: Callable[[], bool], start: Callable, collect: Callable, space: Any, *args: Any, **kw: Any):
        super().__init__(*args, **kw)
        self.free, self.start, self.collect_done, self.space = free, start, collect, space
        self.docs: dict[int, dict[str, Any]] = {}

    def serial_evaluate(self, N: int = -1) -> None:
        for doc in self.trials._dynamic_trials:
            if doc["state"] == JOB_STATE_NEW and self.free():
                doc["state"], doc["book_time"] = JOB_STATE_RUNNING, coarse_utcnow()
                self.docs[doc["tid"]] = doc
                self.start(doc["tid"], space_eval(self.space, spec_from_misc(doc["misc"])))
        self.trials.refresh()
        self.collect(block=not self.free())

    def collect(self, block: bool) -> None:
        for number, record in self.collect_done(block):
            doc = self.docs.pop(number)
            doc["result"], doc["state"] = trial_result(record), JOB_STATE_DONE
            doc["refresh_time"] = coarse_utcnow()
        self.trials.refresh()


def minimize_elsewhere(
    free: Callable[[], bool],
    start: Callable[[int, dict[str, Any]], None],
    collect: Callable[[bool], list[tuple[int, Any]]],
    space: Any,
    trials: Trials,
    suggest: Callable[..., list],
    max_evals: int,
    seed: int,
) -> None:
    """fmin over ``space`` (hyperopt expressions) in ``trials``, each trial started elsewhere: ``start(id,
    sample)``; ``collect(block)`` gives the trials finished since (id, record), ``block``: wait for one first.
    Runs until ``max_evals`` trials (those in ``trials`` included) or the stop rule (in ``suggest``) ends it;
    it returns with trials still in flight, which the caller collects."""
    loop = _ElsewhereIter(
        free,
        start,
        collect,
        space,
        suggest,
        Domain(lambda _: None, space),
        trials,
        rstate=np.random.default_rng(seed),
        asynchronous=False,
        max_evals=max_evals,
        show_progressbar=False,
    )
    loop.exhaust()
