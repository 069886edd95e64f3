"""The train workflow against a real sqlite MLflow store: params, metrics, tags, artifacts, model."""

import mlflow
import numpy as np
import pandas as pd
import pytest

from hyperflow.config import build_config
from hyperflow.workflows.train import TrainingDiverged, train


@pytest.fixture(scope="module")
def people_csv(tmp_path_factory):
    rng = np.random.default_rng(1)
    n = 240
    frame = pd.DataFrame(
        {"age": rng.normal(40, 12, n), "city": rng.choice(["paris", "oslo", "rome"], n), "score": rng.normal(0, 1, n)}
    )
    frame["label"] = np.where(frame["score"] + (frame["city"] == "oslo") > 0.5, "yes", "no")
    frame.loc[::9, "age"] = np.nan
    path = tmp_path_factory.mktemp("data") / "people.csv"
    frame.to_csv(path, index=False)
    return path


def test_train_run_has_params_metrics_tags_artifacts(experiment, client):
    outcome = train(build_config({"epochs": "4", "progress": "false", "experiment": experiment}))
    run = client.get_run(outcome.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["epochs"] == "4" and run.data.params["optimizer"] == "adam"
    assert run.data.params["n_train"] == "1257"
    tags = run.data.tags
    assert tags["hyperflow.role"] == "train" and tags["hyperflow.train_status"] == "completed"
    assert tags["hyperflow.data_fingerprint"].startswith("builtin:digits:sklearn-")
    assert tags["hyperflow.version"]
    history = client.get_metric_history(outcome.run_id, "val_loss")
    assert sorted(m.step for m in history) == [1, 2, 3, 4]
    assert {"test_accuracy", "test_f1", "best_val_loss", "train_seconds"} <= set(run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(outcome.run_id, "plots")}
    assert "plots/learning_curve.png" in artifacts
    inputs = run.inputs.dataset_inputs
    assert inputs and inputs[0].dataset.name == "digits"
    model = mlflow.pyfunc.load_model(outcome.model_uri)
    rows = pd.DataFrame(np.zeros((2, 64)), columns=[f"pixel_{i}_{j}" for i in range(8) for j in range(8)])
    out = model.predict(rows)
    assert list(out.columns[:2]) == ["prediction", "probability_0"]
    assert np.allclose(out.filter(like="probability_").sum(axis=1), 1, atol=1e-5)


def test_model_takes_raw_rows_and_registers(experiment, client, people_csv):
    outcome = train(
        build_config(
            {
                "data": str(people_csv),
                "target": "label",
                "epochs": "3",
                "progress": "false",
                "experiment": experiment,
                "model_name": f"{experiment}-model",
            }
        )
    )
    assert str(outcome.registered_version) == "1"
    version = client.get_model_version(f"{experiment}-model", "1")
    assert version.run_id == outcome.run_id
    model = mlflow.pyfunc.load_model(f"models:/{experiment}-model/1")
    raw = pd.DataFrame({"score": [2.0, -2.0, 0.1], "city": ["oslo", None, "tokyo"], "age": [None, 30.0, 41.0]})
    out = model.predict(raw)  # columns in another order, missing values, an unseen city
    assert list(out.columns) == ["prediction", "probability_no", "probability_yes"]
    assert out["prediction"].isin(["yes", "no"]).all()
    assert out.loc[0, "probability_yes"] > out.loc[1, "probability_yes"]
    sig = model.metadata.get_input_schema()
    assert {c.name for c in sig.inputs} == {"age", "city", "score"}
    reqs = mlflow.artifacts.download_artifacts(f"models:/{experiment}-model/1") + "/requirements.txt"
    assert "torch==" in open(reqs).read()


@pytest.mark.integration
def test_regression_model_predicts_in_target_units(experiment):
    outcome = train(build_config({"data": "diabetes", "epochs": "20", "progress": "false", "experiment": experiment}))
    model = mlflow.pyfunc.load_model(outcome.model_uri)
    from sklearn.datasets import load_diabetes

    X = load_diabetes(as_frame=True).frame.drop(columns="target").head(20)
    predictions = model.predict(X)["prediction"]
    assert 50 < predictions.mean() < 250  # diabetes targets range 25..346
    assert outcome.test_metrics["test_r2"] > 0.2


@pytest.mark.integration
def test_segmentation_model_returns_masks(experiment):
    outcome = train(
        build_config(
            {
                "data": "shapes",
                "model": "unet",
                "channels": "4",
                "epochs": "2",
                "progress": "false",
                "experiment": experiment,
                "batch_size": "32",
            }
        )
    )
    model = mlflow.pyfunc.load_model(outcome.model_uri)
    from hyperflow.core.builtins import make_shapes

    X, _ = make_shapes(n=3)
    out = model.predict(X)
    assert out.shape == (3, 1, 32, 32) and ((out >= 0) & (out <= 1)).all()
    assert "test_dice" in outcome.test_metrics


def test_tensorboard_event_files_are_logged(experiment, client):
    outcome = train(
        build_config(
            {"epochs": "2", "tensorboard": "true", "log_model": "false", "progress": "false", "experiment": experiment}
        )
    )
    files = client.list_artifacts(outcome.run_id, "tensorboard")
    assert any("events.out.tfevents" in f.path for f in files)
    assert outcome.model_uri is None


def test_diverged_training_ends_failed_with_reason(experiment, client):
    with pytest.raises(TrainingDiverged, match="lower the learning rate"):
        train(
            build_config(
                {
                    "optimizer": "sgd",
                    "momentum": "0",
                    "schedule": "constant",
                    "lr": "1e6",
                    "epochs": "3",
                    "progress": "false",
                    "experiment": experiment,
                }
            )
        )
    run = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])[0]
    assert run.info.status == "FAILED"
    assert "non-finite loss" in run.data.tags["hyperflow.failure_reason"]
    assert run.data.tags["hyperflow.train_status"] == "diverged"


@pytest.mark.parametrize("error", ["ValueError", "PermissionError"])
@pytest.mark.parametrize(
    "command, what, settings", [("train", "training", ["epochs=1"]), ("lr-find", "the LR range test", ["num_iter=20"])]
)
def test_an_error_raised_while_training_is_one_line_exit_1_and_the_run_failed(
    command, what, settings, error, tmp_path, experiment, client, monkeypatch, capsys
):
    """A user's model (or torch) raising during training or the range test: one line naming the error and
    where it was raised (the user's file, not torch's internals), exit 1, the run FAILED (train: with that
    reason as a tag). An OSError of the model's (PermissionError) too: not taken for the store failing."""
    from test_search import PICKY_MODEL

    from hyperflow.cli import main

    module = f"picky_{error.lower()}"  # one module per error: an imported module is not read again
    (tmp_path / f"{module}.py").write_text(PICKY_MODEL.replace("ERROR = ValueError", f"ERROR = {error}"))
    monkeypatch.syspath_prepend(str(tmp_path))
    capsys.readouterr()
    code = main(
        [command, f"model={module}:build", "batch_size=16", *settings, f"experiment={experiment}", "progress=false"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 1, err
    line = next(i for i, text in enumerate(PICKY_MODEL.splitlines(), 1) if "raise ERROR" in text)
    assert err == (
        f"hyperflow {command}: error: {what} raised {error}: batches of more than 8 rows are refused "
        f"(at {module}.py:{line} in forward)"
    )
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert run.info.status == "FAILED"
    if command == "train":
        assert run.data.tags["hyperflow.failure_reason"] == err.removeprefix("hyperflow train: error: ")


@pytest.mark.integration
def test_a_table_too_wide_for_mlflows_dataset_schema_trains_and_says_so(experiment, client, tmp_path):
    """1,100 columns of 1,000-character names make a schema text past MLflow's 1,048,575 characters (as
    20,000 short names do): the dataset is recorded without it (input tag ``schema`` says why), the model
    without an input example; the signature names every column and the model scores the rows."""
    import time

    rng = np.random.default_rng(0)
    columns = [f"{i:04d}".ljust(1000, "x") for i in range(1100)]
    frame = pd.DataFrame(rng.normal(size=(30, len(columns))), columns=columns)
    frame["label"] = np.where(frame[columns[0]] > 0, "yes", "no")
    path = tmp_path / "wide.csv"
    frame.to_csv(path, index=False)
    started = time.monotonic()
    outcome = train(
        build_config(
            {
                "data": str(path),
                "target": "label",
                "epochs": "1",
                "width": "4",
                "progress": "false",
                "experiment": experiment,
            }
        )
    )
    seconds = time.monotonic() - started
    run = client.get_run(outcome.run_id)
    assert run.info.status == "FINISHED"
    (record,) = run.inputs.dataset_inputs
    assert not record.dataset.schema and record.dataset.name == "wide"
    tags = {t.key: t.value for t in record.tags}
    assert tags["schema"] == "left out: 1101 columns make it longer than MLflow stores", tags
    model = mlflow.pyfunc.load_model(outcome.model_uri)
    assert model.metadata.get_input_schema().input_names() == columns
    assert model.metadata.saved_input_example_info is None
    assert len(model.predict(frame.head(3))) == 3
    print(f"trained and logged a 1,101-column table in {seconds:.1f} s")
