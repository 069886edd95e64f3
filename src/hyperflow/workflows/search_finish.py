"""The end of a search: its orphaned child runs ended, the trials table and plots, the best trial on the search
run, its model logged into its run, registered and made the ``challenger`` (once: a resume after a cut-short end
neither logs nor registers it again), and the search run's page in MLflow's UI linked to both."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pandas as pd
import torch

from hyperflow import names, tracking
from hyperflow.config import SearchConfig, TrainConfig
from hyperflow.core import search_plots
from hyperflow.core.assembly import Setup, setup_training
from hyperflow.core.data import Dataset
from hyperflow.engine.importance import parameter_importance
from hyperflow.engine.trial import TrialRecord
from hyperflow.errors import SearchFailed
from hyperflow.runtime import startup
from hyperflow.tracking import registry, registry_writes, search_record, search_store
from hyperflow.workflows.search_outcome import SearchOutcome
from hyperflow.workflows.search_trials import Kept


def finish_search(
    outcome: SearchOutcome,
    search: SearchConfig,
    dataset: Dataset,
    seed: int,
    config_of: Callable[[dict[str, Any]], TrainConfig],
    kept: Kept | None,
) -> SearchOutcome:
    """Complete ``outcome`` (records and stop reason set): table, plots, best trial, its model logged (trained
    again from its settings unless ``kept``) and registered."""
    name = (search.model_name or dataset.default_model_name) if search.register else None

    def log_model(best: TrialRecord) -> None:
        fresh = kept is not None and kept.number == best.number  # its run was made in this session
        _log_best_model(best, name, outcome, lambda: _best_setup(best, search.refit, dataset, config_of, kept), fresh)

    return _finish(outcome, seed, name, log_model)


def finish_objective_search(
    outcome: SearchOutcome, search: SearchConfig, seed: int, default_name: str
) -> SearchOutcome:
    """Complete the ``outcome`` of a search of the user's own function: table, plots, best trial, and the model
    its run logged (if it logged one) registered; with none, ``outcome.model_note`` says so."""
    name = (search.model_name or f"hyperflow-{default_name}") if search.register else None

    def register_logged(best: TrialRecord) -> None:
        model = tracking.finished_model(best.run_id, name=None)
        if model is None:
            outcome.model_note = (
                f"trial {best.number}'s run logged no model (log one with mlflow.<flavor>.log_model in the "
                f"objective): nothing registered"
            )
            return
        outcome.model_uri, outcome.model_id = model.model_uri, model.model_id
        if name is not None:
            _register(best, name, outcome, fresh=False)

    return _finish(outcome, seed, name, register_logged)


def _finish(
    outcome: SearchOutcome, seed: int, name: str | None, log_model: Callable[[TrialRecord], None]
) -> SearchOutcome:
    """The search's child runs still RUNNING that no trial owns (twins of runs whose creating request was sent
    twice) end KILLED first: no trial runs now, and the trials are ``outcome.records`` alone. Then the table and
    plots, the best trial, and ``log_model(best)``, whose failure is one line (the trials stay as they are)."""
    search_store.end_orphans(outcome.experiment_id, outcome.run_id)
    records = outcome.records
    ok = [r for r in records if r.status == names.TRIAL_OK and r.loss is not None]
    best = outcome.best = min(ok, key=lambda r: (r.loss, r.number)) if ok else None
    _log_table(records, seed)
    _log_curves(outcome)
    if best is None:
        return outcome
    search_record.record_best(best.run_id, best.number, best.loss, best.params)
    try:
        log_model(best)
    except Exception as exc:  # the trials are done and stay as they finished; the model can be logged later
        what = "logging the best model" if outcome.model_uri is None else f"registering it as '{name}'"
        try:
            search_record.set_model_status(f"failed: {tracking.one_line(exc)}")
            _link_best(outcome, best)
        except Exception:
            pass
        raise SearchFailed(
            f"the search's {len(records)} trials are done (best: trial {best.number}, run {best.run_id}, "
            f"val_loss {best.loss:.4g}) but {what} failed: {tracking.one_line(exc)}; the trials stay as they "
            f"finished. Once that is fixed, log the model without running the trials again: "
            f"hyperflow search resume={outcome.run_id}"
        ) from None
    if outcome.model_uri is None:
        search_record.set_model_status("none logged")
    else:
        status = "logged" if outcome.registered is None else "registered {}/{}".format(*outcome.registered)
        search_record.set_model_status(status)
    _link_best(outcome, best)
    return outcome


def _link_best(outcome: SearchOutcome, best: TrialRecord) -> None:
    counts = ", ".join(f"{sum(r.status == s for r in outcome.records)} {s}" for s in names.TRIAL_STATUSES)
    search_record.link_best(
        outcome.run_id,
        outcome.experiment_id,
        (best.number, best.run_id, float(best.loss or 0.0)),
        f"{len(outcome.records)} trials: {counts}",
        outcome.model_id,
        outcome.registered,
    )


def _log_best_model(
    best: TrialRecord, name: str | None, outcome: SearchOutcome, best_setup: Callable[[], Setup], fresh: bool = False
) -> None:
    """Log the best trial's model into its run (once: a resume finds the model a cut-short search logged)
    and register it (:func:`_register`). ``fresh``: the best trial ran in this session, so nothing was logged
    or registered for it before and the store need not be asked."""
    test = {} if fresh else search_record.best_test_metrics(outcome.run_id)
    model = None if fresh else tracking.finished_model(best.run_id)
    if model is None or not test:
        setup = best_setup()
        d = setup.dataset
        test = setup.trainer.evaluate(d.X_test, d.y_test, prefix=names.TEST_PREFIX)
        search_record.log_test_metrics(best.run_id, test)
        if model is None:
            model = tracking.log_model(setup.trainer.model, setup.model_spec, d, None, setup.user_code, best.run_id)
    outcome.test_metrics = test
    outcome.model_uri, outcome.model_id = model.model_uri, model.model_id
    if name is not None:
        _register(best, name, outcome, fresh)


def _register(best: TrialRecord, name: str, outcome: SearchOutcome, fresh: bool) -> None:
    """Register ``outcome.model_uri`` as a version of ``name`` once per trial run: a resume never registers it
    again nor moves ``challenger`` again once the version carries its tags."""
    about = {"trial_run_id": best.run_id, "val_loss": str(best.loss)}  # sent with the version when it is created
    version, created = tracking.register_once(outcome.model_uri, name, best.run_id, look_up=not fresh, tags=about)
    if created or "search_run_id" not in version.tags:  # the marker tag comes last: without it, it was cut short
        client = registry.default_client()
        registry_writes.set_alias(client, name, names.CHALLENGER, str(version.version))
        tags = {**({} if created else about), "search_run_id": outcome.run_id}
        registry_writes.set_version_tags(client, name, str(version.version), tags)
    outcome.registered = (name, str(version.version))


def _best_setup(
    best: TrialRecord,
    refit: bool,
    dataset: Dataset,
    config_of: Callable[[dict[str, Any]], TrainConfig],
    kept: Kept | None,
) -> Setup:
    """The best trial's trained model: kept in memory when it ran in this session, else trained again
    from its settings (seeded, so the same model); with ``refit``, trained on train+val."""
    config = config_of(best.params)
    train = dataset
    if refit:
        train = copy.copy(dataset)
        train.X_train = torch.cat([dataset.X_train, dataset.X_val])
        train.y_train = torch.cat([dataset.y_train, dataset.y_val])
        config = config.replace(restore_best=False, patience=0)
    elif kept is not None and kept.number == best.number:
        setup = setup_training(config, dataset=dataset, train=False)
        setup.trainer.model.load_state_dict(kept.state)
        return setup
    setup = setup_training(config, dataset=train)
    startup.end()  # a command's start-up is over: see hyperflow.runtime.startup
    setup.trainer.fit(train.X_train, train.y_train, dataset.X_val, dataset.y_val)
    return setup


def _log_table(records: list[TrialRecord], seed: int) -> None:
    rows = [
        {
            "trial": r.number,
            "status": r.status,
            "best_val_loss": r.loss,
            "epochs": r.epochs,
            "run_id": r.run_id,
            "reason": r.reason,
            **r.params,
        }
        for r in records
    ]
    table = pd.DataFrame(rows)
    search_record.log_trials_table(table)
    if not rows:
        return
    tracking.log_figure(
        search_plots.search_progress(
            [r.number for r in records], [r.loss for r in records], [r.status for r in records]
        ),
        "plots/search_progress.png",
    )
    ok = table[table["status"] == names.TRIAL_OK]
    params = [c for c in ok.columns if c in {k for r in records for k in r.params}]
    scores = parameter_importance(ok[params], ok["best_val_loss"].astype(float), seed) if len(ok) else None
    if scores is not None:
        tracking.log_figure(
            search_plots.importance(
                scores["parameter"].tolist(), scores["importance"].tolist(), scores["std"].tolist()
            ),
            "plots/parameter_importance.png",
        )
        search_record.log_text(scores.to_csv(index=False), "parameter_importance.csv")


def _log_curves(outcome: SearchOutcome) -> None:
    """The learning curves of all trials (pruned ones marked) and the best so far against the units of work, each
    with the table it is drawn from (``plots/*.csv``; no curves when no trial reported a value); drawn once, at the
    end of a search and of each resume."""
    records = outcome.records
    if not records:
        return
    value, step, unit = ("reported value", "step", "steps") if outcome.objective else ("val_loss", "epoch", "epochs")
    numbers, statuses = [r.number for r in records], [r.status for r in records]
    curves = search_plots.curves_table(numbers, statuses, [r.history for r in records])
    if len(curves):  # an objective may report no values
        best = outcome.best.number if outcome.best is not None else None
        tracking.log_figure(search_plots.learning_curves(curves, best, value, step), "plots/learning_curves.png")
        search_record.log_text(curves.to_csv(index=False), "plots/learning_curves.csv")
    progress = search_plots.best_so_far_table(numbers, statuses, [r.loss for r in records], [r.epochs for r in records])
    tracking.log_figure(search_plots.best_so_far(progress, outcome.budget, unit, value), "plots/best_so_far.png")
    search_record.log_text(progress.to_csv(index=False), "plots/best_so_far.csv")
