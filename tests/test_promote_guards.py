"""The registry fails closed, a first promotion is never unchecked, and a version cannot replace a champion
that solves another problem. Real faults: a port nobody listens on, and a real `mlflow server` stopped
in the middle of a promotion (the registry behind it; runs stay in the test's sqlite store)."""

import uuid

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from services import SqliteServer, free_port
from test_registry import items_csv

from hyperflow.cli import main
from hyperflow.config import build_config
from hyperflow.errors import RegistryError
from hyperflow.tracking.registry import alias_version, model_exists
from hyperflow.workflows.promote import PromoteConfig, promote
from hyperflow.workflows.train import train

MODELS = {"good": "1", "regressor": "2", "other_target": "3", "extra_column": "4"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One registered model holding a classifier of `kind` and three versions that solve another problem."""
    folder = tmp_path_factory.mktemp("guards")
    data = items_csv(folder / "items.csv")
    wider = pd.read_csv(data).assign(weight=np.arange(240) % 7)
    wider.to_csv(folder / "wider.csv", index=False)
    mlflow.set_experiment("guard-models")
    base = f"guards-{uuid.uuid4().hex[:8]}"
    common = {"width": "16", "progress": "false", "model_name": base, "epochs": "3", "lr": "0.01"}
    for source, target in [(data, "kind"), (data, "size"), (data, "colour"), (str(folder / "wider.csv"), "kind")]:
        train(build_config({**common, "data": source, "target": target}))
    return {"base": base, "data": data}


def copy(client: MlflowClient, trained: dict, *kinds: str) -> tuple[str, list[str]]:
    name = f"g-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    return name, [str(client.copy_model_version(f"models:/{trained['base']}/{MODELS[k]}", name).version) for k in kinds]


def runs_of(experiment: str, role: str) -> list:
    return mlflow.search_runs(
        experiment_names=[experiment], output_format="list", filter_string=f"tags.`hyperflow.role` = '{role}'"
    )


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``hyperflow <argv>``; a non-zero exit says one line, no traceback."""
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    err = err.strip()
    assert code == 0 or (len(err.splitlines()) == 1 and "Traceback" not in err), err
    return code, out, err


# ------------------------------------------------------------------------------------ first promotion


@pytest.mark.integration
def test_a_first_promotion_needs_a_threshold_or_allow_first(trained, client, experiment, capsys):
    name, (good,) = copy(client, trained, "good")
    code, _, err = cli(capsys, "promote", f"model_name={name}", f"version={good}")
    assert code == 2  # the default gate compares with the champion: with none, it would check nothing
    assert "has no champion yet" in err and "allow_first=true" in err and "gate.accuracy.threshold" in err
    assert alias_version(client, name, "champion") is None and runs_of(experiment, "promote") == []
    assert "validation_status" not in client.get_model_version(name, good).tags

    code, out, _ = cli(capsys, "promote", f"model_name={name}", f"version={good}", "allow_first=true")
    assert code == 0 and alias_version(client, name, "champion") == good
    assert "nothing was checked; allow_first=true lets it pass" in out


def test_a_scheduled_retrain_of_a_new_name_is_refused_before_training(trained, client, experiment, capsys):
    name = f"new-{uuid.uuid4().hex[:8]}"  # e.g. a typo in the schedule's model name
    code, _, err = cli(
        capsys,
        "retrain",
        f"model_name={name}",
        "mode=search",
        f"data={trained['data']}",
        "target=kind",
        f"experiment={experiment}",
    )
    assert code == 2 and "allow_first=true" in err
    assert not model_exists(client, name) and runs_of(experiment, "retrain") == []


# ------------------------------------------------------------------------------------ same problem


@pytest.mark.parametrize(
    "kind, message",
    [
        ("regressor", "it is a regression model and the champion a classification model"),
        ("other_target", "it predicts 'colour' and the champion 'kind'"),
        ("extra_column", "its input columns differ from the champion's (adds 'weight')"),
    ],
)
def test_a_candidate_for_another_problem_cannot_replace_the_champion(
    trained, client, experiment, capsys, kind, message
):
    name, (good, other) = copy(client, trained, "good", kind)
    client.set_registered_model_alias(name, "champion", good)
    code, _, err = cli(capsys, "promote", f"model_name={name}", f"version={other}")
    assert code == 2 and f"version {other} of '{name}' cannot replace champion version {good}" in err and message in err
    assert alias_version(client, name, "champion") == good and runs_of(experiment, "promote") == []
    assert "validation_status" not in client.get_model_version(name, other).tags


# ------------------------------------------------------------------------------------ registry faults


def test_only_not_found_means_no_champion_in_sqlite(trained, client):
    name, (good,) = copy(client, trained, "good")
    assert alias_version(client, name, "champion") is None  # INVALID_PARAMETER_VALUE, confirmed: no alias
    assert alias_version(client, "no-such-model", "champion") is None  # RESOURCE_DOES_NOT_EXIST
    client.set_registered_model_alias(name, "champion", good)
    assert alias_version(client, name, "champion") == good


@pytest.fixture
def no_retries(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def test_an_unreachable_registry_stops_promote_and_retrain(
    trained, client, experiment, capsys, monkeypatch, no_retries
):
    name, (good, bad) = copy(client, trained, "good", "good")
    client.set_registered_model_alias(name, "champion", good)
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RegistryError, match=f"the model registry {dead} failed while reading alias 'champion'"):
        alias_version(MlflowClient(registry_uri=dead), name, "champion")
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", dead)  # runs would still go to the sqlite store
    for command in (
        ["promote", f"version={bad}", "allow_first=true"],
        ["retrain", "mode=search", "allow_first=true", f"experiment={experiment}"],
    ):
        code, _, err = cli(capsys, command[0], f"model_name={name}", *command[1:])
        assert (
            code == 2
            and err.startswith(f"hyperflow {command[0]}: error: the model registry {dead} failed")
            and "nothing was moved" in err
        )
    monkeypatch.delenv("MLFLOW_REGISTRY_URI")
    assert alias_version(client, name, "champion") == good
    assert runs_of(experiment, "promote") == [] and runs_of(experiment, "retrain") == []


@pytest.fixture(scope="module")
def server(tracking_uri, tmp_path_factory):
    MlflowClient().search_experiments(max_results=1)  # the schema exists before a second process opens it
    running = SqliteServer(tmp_path_factory.mktemp("server"), backend=tracking_uri).start()
    yield running
    running.stop()


@pytest.mark.integration
def test_a_registry_that_fails_at_the_reread_moves_nothing(
    trained, client, experiment, server, monkeypatch, no_retries
):
    """Through a real REST server, "not found" is told apart from an error; then the server goes away
    between the decision and the move: the promotion stops, the alias stays, the run is ended."""
    name, (bad, good) = copy(client, trained, "good", "good")
    rest = MlflowClient(registry_uri=server.ready().uri)
    assert alias_version(rest, name, "champion") is None and alias_version(rest, "no-such-model", "champion") is None
    client.set_registered_model_alias(name, "champion", bad)
    assert alias_version(rest, name, "champion") == bad
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", server.uri)
    with pytest.raises(RegistryError, match=f"the model registry {server.uri} failed while reading alias"):
        promote(
            PromoteConfig(model_name=name, version=good, gate="{accuracy: {threshold: 0}}"), before_move=server.stop
        )
    monkeypatch.delenv("MLFLOW_REGISTRY_URI")
    assert alias_version(client, name, "champion") == bad
    assert "validation_status" not in client.get_model_version(name, good).tags
    (run,) = runs_of(experiment, "promote")
    assert run.info.status in ("FAILED", "KILLED")  # ended, never left RUNNING
