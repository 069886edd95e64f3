"""The ``train`` workflow: one tracked training run from a config."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from typing import Any

from hyperflow import names, tracking
from hyperflow.config import TrainConfig
from hyperflow.core.assembly import Setup, setup_training, use_config, with_found_lrs
from hyperflow.core.trainer import ProgressBar, TrainResult
from hyperflow.errors import UsageError
from hyperflow.runtime import startup
from hyperflow.tracking import artifacts, new_store
from hyperflow.tracking.faults import raised_in_training
from hyperflow.tracking.held_signals import HeldSignals
from hyperflow.workflows.lr_find import lr_range_test_run


@dataclass
class TrainOutcome:
    run_id: str
    experiment_id: str
    result: TrainResult
    test_metrics: dict[str, float] = field(default_factory=dict)
    model_uri: str | None = None
    registered_version: str | None = None


class TrainingDiverged(RuntimeError):
    """Training stopped on a non-finite loss; the run is marked FAILED with the reason."""


def _tensorboard_callback(logdir: str) -> Any:
    try:
        return tracking.TensorBoardLogger(logdir)
    except ImportError:
        raise UsageError(
            "tensorboard=true needs the tensorboard package: pip install tensorboard "
            "(or pip install 'hyperflow[tensorboard]')"
        ) from None


def train(
    config: TrainConfig,
    *,
    role: str = names.ROLE_TRAIN,
    parent_run_id: str | None = None,
    extra_tags: dict[str, str] | None = None,
) -> TrainOutcome:
    """Validate and set up everything first (bad input raises UsageError before a run exists, and so does
    an artifact folder that cannot be written), then train inside a run that ends FINISHED, FAILED (diverged,
    error, or the artifact store refusing a write: ArtifactStoreError) or KILLED. A nested run
    (``parent_run_id``) leaves the artifact check to its caller, which made the parent run."""
    setup: Setup = setup_training(config)
    new_store.make_if_missing()  # a new sqlite store from the cached empty one (see hyperflow.tracking.new_store)
    if parent_run_id is None:
        artifacts.check_writable(config.experiment)
    held = HeldSignals("registering the model")  # from the registration to the run's end
    try:
        outcome = _train_run(config, setup, role, parent_run_id, extra_tags, held)
    except BaseException:
        held.release(failed=True)
        raise
    held.release()
    return outcome


def _train_run(
    config: TrainConfig,
    setup: Setup,
    role: str,
    parent_run_id: str | None,
    extra_tags: dict[str, str] | None,
    held: HeldSignals,
) -> TrainOutcome:
    dataset, trainer = setup.dataset, setup.trainer
    with tempfile.TemporaryDirectory() as tb_dir:
        tensorboard = _tensorboard_callback(tb_dir) if config.tensorboard else None
        tags = {**tracking.run_tags(dataset), **(extra_tags or {})}
        run_name = config.run_name or tracking.unique_run_name(role, dataset.name)
        with tracking.tracked_run(
            role, experiment=config.experiment, run_name=run_name, parent_run_id=parent_run_id, tags=tags
        ) as run:
            run_id = run.info.run_id
            tracking.log_params(run_id, {**config.to_params(), **{f"n_{k}": str(v) for k, v in dataset.sizes.items()}})
            tracking.log_dataset(dataset)
            trainer.callbacks += [tracking.MlflowMetrics(run_id, config.flush_secs)]
            if config.progress:
                trainer.callbacks.append(ProgressBar(f"train {dataset.name}"))
            if tensorboard is not None:
                trainer.callbacks.append(tensorboard)
            if config.needs_lr_find:
                found = lr_range_test_run(setup, parent_run_id=run_id).finder
                resolved = with_found_lrs(config, found.suggested_lr_, found.lr_range_)
                use_config(setup, resolved)
                tracking.log_params(run_id, resolved.to_params())  # as resolved.lr etc.: params never change
                tracking.set_tag(names.LR_FIND_STATUS, found.status_)
            startup.end()  # a command's start-up is over: see hyperflow.runtime.startup
            with raised_in_training("training"):
                result = trainer.fit(dataset.X_train, dataset.y_train, dataset.X_val, dataset.y_val)
            tracking.set_tag(names.TRAIN_STATUS, result.status)
            if result.history:
                from hyperflow.core.plots import learning_curve  # matplotlib: only when there is a curve

                tracking.log_figure(
                    learning_curve(result.history, f"{dataset.name} · {config.model}"), "plots/learning_curve.png"
                )
            if tensorboard is not None:
                tracking.log_artifacts(tb_dir, "tensorboard")
            if result.status == "diverged":
                tracking.set_tag(names.FAILURE_REASON, result.reason)
                if result.best_epoch == 0:
                    raise TrainingDiverged(result.reason)
            test = trainer.evaluate(dataset.X_test, dataset.y_test, prefix=names.TEST_PREFIX)
            tracking.log_metrics(
                {
                    **test,
                    names.BEST_VAL_LOSS: result.best_val_loss,
                    names.BEST_EPOCH: result.best_epoch,
                    names.EPOCHS_RUN: result.epochs_run,
                    names.TRAIN_SECONDS: result.seconds,
                }
            )
            outcome = TrainOutcome(run_id, run.info.experiment_id, result, test)
            if config.log_model:
                with artifacts.artifact_write("the model"):
                    info = tracking.log_model(trainer.model, setup.model_spec, dataset, None, setup.user_code)
                outcome.model_uri = info.model_uri
                if config.model_name:
                    held.hold()
                    version, _ = tracking.register_once(info.model_uri, config.model_name, run_id, look_up=False)
                    outcome.registered_version = str(version.version)
    return outcome
