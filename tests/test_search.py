"""Hyperparameter search: spaces, strategies, pruning, failures, resume, and the runs it writes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import forked
import mlflow
import pytest
from hyperopt.pyll import stochastic
from stores import ready_store

from hyperflow.cli import main
from hyperflow.config import build_config
from hyperflow.config.search import build_search_config
from hyperflow.core.assembly import load_data
from hyperflow.core.pruning import ASHAPruner, HyperbandPruner, MedianPruner
from hyperflow.engine.grid import grid_points
from hyperflow.engine.space import load_space
from hyperflow.engine.space_hyperopt import flatten, to_hyperopt, to_vals
from hyperflow.errors import UsageError
from hyperflow.workflows.search import search as run_search

TINY = {"epochs": "3", "width": "32", "progress": "false", "flush_secs": "5"}


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


CONDITIONAL = """
lr: {type: loguniform, low: 1.0e-4, high: 1.0e-1, grid: 2}
depth: {type: int, low: 1, high: 2}
width: {type: choice, values: [16, 32]}
optimizer:
  type: choice
  options:
    adam: {}
    sgd: {momentum: {type: uniform, low: 0.5, high: 0.9, grid: 2}}
epochs: 3
"""


def test_grid_enumerates_exactly_its_combinations(tmp_path):
    points = grid_points(load_space(write(tmp_path, CONDITIONAL)))
    # lr 2 x depth 2 x width 2 x (adam 1 + sgd 2 momenta) = 24
    assert len(points) == 24 and len({tuple(sorted(p.items())) for p in points}) == 24
    assert all(("momentum" in p) == (p["optimizer"] == "sgd") for p in points)
    assert {p["depth"] for p in points} == {1, 2} and all(p["epochs"] == 3 for p in points)


def test_samples_are_valid_values_not_indices(tmp_path):
    space = to_hyperopt(load_space(write(tmp_path, CONDITIONAL)))
    import numpy as np

    rng = np.random.default_rng(0)
    for _ in range(200):
        point = flatten(stochastic.sample(space, rng=rng))
        assert point["width"] in (16, 32) and point["optimizer"] in ("adam", "sgd")
        assert isinstance(point["depth"], int) and point["depth"] in (1, 2)
        assert ("momentum" in point) == (point["optimizer"] == "sgd")
        assert 1e-4 <= point["lr"] <= 1e-1
        vals = to_vals(load_space(write(tmp_path, CONDITIONAL)), point)
        assert (vals["optimizer=sgd/momentum"] != []) == (point["optimizer"] == "sgd")


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("lr: {type: gaussian, low: 1, high: 2}", "unknown type 'gaussian'"),
        ("lr: {type: uniform, low: 2, high: 1}", "needs low < high"),
        ("lr: {type: loguniform, low: 0, high: 1}", "needs low > 0"),
        ("learning_rate: {type: uniform, low: 0.1, high: 1}", "unknown parameter 'learning_rate'"),
        ("width: {type: choice}", "needs either 'values"),
        ("lr: {type: uniform, high: 1}", "needs numbers 'low' and 'high'"),
        ("depth: {type: int, low: 1.5, high: 3}", "whole-number bounds"),
        ("- just a list", "must map setting names"),
        ("epochs: 2\nlr: {type: uniform, low: 0.1, high: 1}\nepochs: 3", "'epochs' appears twice \\(lines 1 and 3\\)"),
    ],
)
def test_bad_spaces_are_refused(tmp_path, text, fragment):
    with pytest.raises(UsageError, match=fragment):
        load_space(write(tmp_path, text))


def test_pruners():
    history = [[1.0, 0.8, 0.6, 0.5], [1.1, 0.9, 0.7, 0.6], [0.9, 0.7, 0.5, 0.4], [1.0, 0.85, 0.65, 0.55]]
    median = MedianPruner(min_epochs=2, startup_trials=3)
    assert not median.should_prune(history, 1, [5.0])  # before min_epochs
    assert median.should_prune(history, 2, [1.5, 1.2]) and not median.should_prune(history, 2, [0.8, 0.75])
    patient = MedianPruner(min_epochs=3, startup_trials=3, patience=2)  # behind at epochs 2 and 3, both
    assert not patient.should_prune(history, 2, [1.5, 1.2])  # before min_epochs
    assert patient.should_prune(history, 3, [1.5, 1.2, 1.0])  # medians 0.825 and 0.625
    assert not patient.should_prune(history, 3, [1.5, 0.8, 0.7])  # level at epoch 2 (best 0.8 < 0.825)
    assert not patient.should_prune(history, 3, [0.9, 0.8, 0.7])  # behind at epoch 3 only
    asha = ASHAPruner(min_epochs=1, reduction_factor=2)
    assert asha.is_rung(1) and asha.is_rung(2) and asha.is_rung(4) and not asha.is_rung(3)
    assert asha.should_prune(history, 2, [1.0, 0.95]) and not asha.should_prune(history, 2, [0.9, 0.6])


def test_hyperband_judges_each_trial_within_its_bracket():
    """min_epochs=1, reduction_factor=2, 4 epochs: 3 brackets, first rungs at epochs 1, 2 and 4, with Hyperband's
    weights 4:3:3; a trial is ranked against the trials of its own bracket only, and none is pruned before a
    trial has run every epoch."""
    hyperband = HyperbandPruner(min_epochs=1, reduction_factor=2)
    assert (hyperband.brackets(4), hyperband.brackets(7), hyperband.brackets(1)) == (3, 3, 1)
    brackets = [hyperband.bracket(n, 3) for n in range(1000)]
    assert [brackets.count(s) for s in range(3)] == pytest.approx([400, 300, 300], abs=15)
    eager = [n for n in range(20) if brackets[n] == 0]
    patient = [n for n in range(20) if brackets[n] == 2]
    good = [[1.0, 0.8, 0.6, 0.5], [1.1, 0.9, 0.7, 0.6]]
    peers = [(eager[0], good[0]), (eager[1], good[1])]
    assert hyperband.judge(eager[2], peers, 1, [2.0])  # behind both of its bracket at its first rung
    assert not hyperband.judge(eager[2], peers, 1, [0.9])
    assert not hyperband.judge(patient[0], peers, 1, [2.0])  # its bracket's first rung is epoch 4, the last
    assert not hyperband.judge(patient[0], [(patient[1], good[0]), (patient[2], good[1])], 3, [2.0, 2.0, 2.0])
    assert not hyperband.judge(eager[2], [], 1, [2.0])  # no trial has run every epoch yet


def _children(client, parent_id):
    exp = client.get_run(parent_id).info.experiment_id
    return client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent_id}'", max_results=500)


@pytest.mark.integration
def test_nested_runs_tags_artifacts_and_challenger(experiment, client):
    settings = build_search_config(
        {
            "max_evals": "5",
            "strategy": "tpe",
            "pruner": "none",
            "model_name": f"{experiment}-best",
            "n_startup_jobs": "3",
        }
    )
    outcome = run_search(settings, build_config({**TINY, "experiment": experiment}))
    parent = client.get_run(outcome.run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["hyperflow.role"] == "search"
    children = _children(client, outcome.run_id)
    assert len(children) == 5
    assert all(c.data.tags["hyperflow.role"] == "trial" and c.info.status == "FINISHED" for c in children)
    assert {c.data.tags["hyperflow.trial_status"] for c in children} == {"ok"}  # pruner=none: nothing pruned
    assert sorted(int(c.data.params["trial_number"]) for c in children) == [0, 1, 2, 3, 4]
    best = parent.data.tags["hyperflow.best_run_id"]
    assert best in {c.info.run_id for c in children}
    steps = client.get_metric_history(outcome.run_id, "best_val_loss")
    values = [m.value for m in sorted(steps, key=lambda m: m.step)]
    assert values == sorted(values, reverse=True) and values[-1] == pytest.approx(outcome.best.loss)
    artifacts = {a.path for a in client.list_artifacts(outcome.run_id)}
    assert {"trials.csv", "best_params.json", "space", "plots"} <= artifacts
    version = client.get_model_version_by_alias(f"{experiment}-best", "challenger")
    assert version.tags["search_run_id"] == outcome.run_id and version.tags["trial_run_id"] == best
    # the challenger is the best trial's model: on the raw test rows it scores what the search logged
    model = mlflow.pyfunc.load_model(f"models:/{experiment}-best@challenger")
    data = load_data(build_config({**TINY, "experiment": experiment}))
    rows = data.raw_all.iloc[data.split_index["test"]]
    predicted = model.predict(rows.drop(columns=[data.target]))["prediction"]
    accuracy = float((predicted.to_numpy() == rows[data.target].to_numpy()).mean())
    assert accuracy == pytest.approx(parent.data.metrics["best_test_accuracy"], abs=1e-6) and accuracy > 0.5


@pytest.mark.integration
def test_same_seed_gives_the_same_trial_sequence(experiment, tmp_path):
    space = write(tmp_path, CONDITIONAL.replace("epochs: 3", "epochs: 1"))

    def params():
        settings = build_search_config(
            {
                "max_evals": "4",
                "strategy": "random",
                "pruner": "none",
                "space": space,
                "register": "false",
                "seed_presets": "false",
            }
        )
        outcome = run_search(settings, build_config({**TINY, "epochs": "1", "experiment": experiment}))
        return [r.params for r in outcome.records]

    assert params() == params()


@pytest.mark.integration
def test_a_diverging_trial_fails_and_the_search_goes_on(tmp_path, experiment, client):
    space = write(
        tmp_path, "lr: {type: choice, values: [1.0e+6, 0.001]}\noptimizer: sgd\nmomentum: 0.0\nschedule: constant\n"
    )
    settings = build_search_config({"space": space, "strategy": "grid", "pruner": "none", "register": "false"})
    outcome = run_search(settings, build_config({**TINY, "experiment": experiment}))
    statuses = {r.params["lr"]: r.status for r in outcome.records}
    assert statuses == {1e6: "failed", 0.001: "ok"}
    failed = next(c for c in _children(client, outcome.run_id) if c.data.tags["hyperflow.trial_status"] == "failed")
    assert failed.info.status == "FAILED" and "non-finite loss" in failed.data.tags["hyperflow.trial_reason"]
    assert client.get_run(outcome.run_id).info.status == "FINISHED"
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 3  # the search and its two trials: nothing stray


PICKY_MODEL = """
import torch

ERROR = ValueError


class Picky(torch.nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.linear = torch.nn.Linear(n_in, n_out)

    def forward(self, x):
        if self.training and x.shape[0] > 8:
            raise ERROR("batches of more than 8 rows are refused")
        return self.linear(x)


def build(input_shape, output_size):
    return Picky(input_shape[0], output_size)
"""


@pytest.mark.integration
@pytest.mark.parametrize("error", ["ValueError", "PermissionError", "ConnectionError"])
def test_any_error_of_a_trials_training_fails_that_trial_and_the_search_goes_on(
    error, tmp_path, experiment, client, monkeypatch
):
    """Not only the errors hyperflow expects (a diverging loss, out of memory): a ValueError or any other
    error from torch or a user's model fails its trial, whose run ends FAILED with the reason; an OSError of
    the model's (a file it cannot read, a download it cannot make) too, not taken for the store failing."""
    module = f"picky_{error.lower()}"  # one module per error: an imported module is not read again
    (tmp_path / f"{module}.py").write_text(PICKY_MODEL.replace("ERROR = ValueError", f"ERROR = {error}"))
    monkeypatch.syspath_prepend(str(tmp_path))
    space = write(tmp_path, "batch_size: {type: choice, values: [8, 16]}\n")
    settings = build_search_config(
        {"space": space, "strategy": "grid", "pruner": "none", "register": "false", "parallelism": "1"}
    )
    outcome = run_search(settings, build_config({**TINY, "model": f"{module}:build", "experiment": experiment}))
    assert {r.params["batch_size"]: r.status for r in outcome.records} == {8: "ok", 16: "failed"}
    failed = next(c for c in _children(client, outcome.run_id) if c.data.tags["hyperflow.trial_status"] == "failed")
    assert failed.info.status == "FAILED"
    assert failed.data.tags["hyperflow.trial_reason"] == f"{error}: batches of more than 8 rows are refused"
    assert client.get_run(outcome.run_id).info.status == "FINISHED"


@pytest.mark.integration
def test_consecutive_failures_stop_the_search(tmp_path, experiment):
    space = write(
        tmp_path,
        "lr: {type: choice, values: [1.0e+6, 1.0e+7, 1.0e+8]}\noptimizer: sgd\nmomentum: 0.0\nschedule: constant\n",
    )
    settings = build_search_config(
        {"space": space, "strategy": "grid", "max_consecutive_failures": "2", "register": "false", "parallelism": "1"}
    )  # in flight: tests/test_parallel.py
    outcome = run_search(settings, build_config({**TINY, "experiment": experiment}))
    assert len(outcome.records) == 2 and "2 trials failed in a row" in outcome.stop_reason
    assert outcome.best is None


@pytest.mark.integration
def test_pruning_stops_a_hopeless_trial(tmp_path, experiment):
    space = write(tmp_path, "lr: {type: choice, values: [0.003, 0.002, 0.004, 1.0e-7]}\nepochs: 6\n")
    settings = build_search_config(
        {
            "space": space,
            "strategy": "grid",
            "pruner": "median",
            "min_epochs": "2",
            "prune_startup_trials": "2",
            "register": "false",
            "parallelism": "1",
        }
    )
    outcome = run_search(settings, build_config({**TINY, "experiment": experiment}))
    hopeless = next(r for r in outcome.records if r.params["lr"] == 1e-7)
    assert hopeless.status == "pruned" and hopeless.epochs == 2
    assert all(r.status == "ok" and r.epochs == 6 for r in outcome.records if r is not hopeless)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["strategy=cmaes"], "unknown strategy 'cmaes'"),
        (["space=missing.yaml"], "space file 'missing.yaml' not found"),
        (["resume=0123456789abcdef"], "resume=0123456789abcdef: no such run"),
        (["max_evals=0"], "max_evals must be at least 1"),
        (["pruner=patient"], "unknown pruner 'patient'"),
        (["prune_patience=0"], "prune_patience must be at least 1"),
    ],
)
def test_search_bad_input(args, fragment, capsys, experiment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["search", *args, f"experiment={experiment}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hyperflow: error:") and fragment in err and "\n" not in err
    exp = mlflow.get_experiment_by_name(experiment)
    assert mlflow.search_runs([exp.experiment_id], output_format="list") == []


def test_a_model_without_trainable_parameters_is_refused_before_any_run(capsys, experiment, tmp_path, monkeypatch):
    """The space check builds each trial's model (not its optimizer: the trials build their own): a model
    with nothing to train is refused there, in one line, with no run written."""
    (tmp_path / "frozen_models.py").write_text(
        "import torch\n\ndef frozen(input_shape, output_size):\n"
        "    return torch.nn.Linear(input_shape[0], output_size).requires_grad_(False)\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    capsys.readouterr()
    assert main(["search", "model=frozen_models:frozen", "max_evals=2", f"experiment={experiment}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "hyperflow: error: model frozen_models:frozen has no trainable parameters: its factory must "
        "return an nn.Module with at least one parameter that requires grad"
    )
    exp = mlflow.get_experiment_by_name(experiment)
    assert exp is None or mlflow.search_runs([exp.experiment_id], output_format="list") == []


@pytest.mark.integration
def test_timeout_stops_the_trial_in_flight(tmp_path, experiment):
    space = write(tmp_path, "lr: {type: choice, values: [0.001, 0.002]}\nepochs: 100000\n")
    settings = build_search_config(
        {"space": space, "strategy": "random", "timeout": "3", "pruner": "none", "register": "false", "max_evals": "5"}
    )
    started = time.monotonic()
    outcome = run_search(settings, build_config({**TINY, "experiment": experiment}))
    assert time.monotonic() - started < 60
    assert outcome.stop_reason == "timeout"
    assert outcome.records[0].status == "pruned" and outcome.records[0].reason == "timeout"


@pytest.mark.integration
def test_refit_trains_the_best_on_train_and_val(tmp_path, experiment, client):
    space = write(tmp_path, "lr: {type: choice, values: [0.003]}\n")
    settings = build_search_config(
        {"space": space, "strategy": "grid", "refit": "true", "model_name": f"{experiment}-refit"}
    )
    outcome = run_search(settings, build_config({**TINY, "experiment": experiment}))
    assert outcome.registered == (f"{experiment}-refit", "1") and outcome.test_metrics["test_accuracy"] > 0.8


@pytest.mark.integration
def test_sigterm_ends_every_run_and_prints_the_resume_command(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")}
    env["MLFLOW_TRACKING_URI"] = uri
    args = [
        "strategy=random",
        "max_evals=50",
        "pruner=none",
        "register=false",
        "experiment=term",
        *[f"{k}={v}" for k, v in TINY.items()],
        "epochs=30",
    ]
    client = ready_store(uri)
    proc = forked.Popen(
        [sys.executable, "-m", "hyperflow", "search", *args],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    def trial_running():
        exp = client.get_experiment_by_name("term")
        runs = client.search_runs([exp.experiment_id]) if exp else []
        done = [r for r in runs if r.data.tags.get("hyperflow.role") == "trial" and r.info.status == "FINISHED"]
        return len(done) >= 1 and any(
            r.info.status == "RUNNING" and r.data.tags.get("hyperflow.role") == "trial" for r in runs
        )

    deadline = time.monotonic() + 180
    while not trial_running() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    runs = client.search_runs([client.get_experiment_by_name("term").experiment_id])
    parent = next(r for r in runs if r.data.tags["hyperflow.role"] == "search")
    assert f"hyperflow search resume={parent.info.run_id}" in err
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert parent.info.status == "KILLED"


@pytest.mark.integration
def test_literature_presets_are_the_first_trials(tmp_path, experiment):
    space = write(
        tmp_path,
        "lr: {type: loguniform, low: 1.0e-4, high: 3.0e-2}\n"
        "optimizer: {type: choice, values: [adam, adamw]}\nepochs: 1\n",
    )
    settings = build_search_config({"space": space, "max_evals": "3", "pruner": "none", "register": "false"})
    outcome = run_search(settings, build_config({**TINY, "experiment": experiment}))
    first = [(r.params["optimizer"], r.params["lr"]) for r in outcome.records[:2]]
    assert first == [("adam", 1e-3), ("adamw", 1e-3)]  # Kingma & Ba; Loshchilov & Hutter
    assert len(outcome.records) == 3


@pytest.mark.integration
def test_a_budget_smaller_than_the_presets_still_runs_its_trials(tmp_path, experiment):
    space = write(
        tmp_path,
        "lr: {type: loguniform, low: 1.0e-4, high: 3.0e-2}\n"
        "optimizer: {type: choice, values: [adam, adamw]}\nepochs: 1\n",
    )
    for budget in (1, 2):
        settings = build_search_config(
            {"space": space, "max_evals": str(budget), "pruner": "none", "register": "false"}
        )
        outcome = run_search(settings, build_config({**TINY, "experiment": experiment}))
        assert len(outcome.records) == budget and outcome.best is not None


LRS = ", ".join(f"{0.001 * (i + 1):.3f}" for i in range(60))
BAD_SPACES = [
    ("optimizer: {type: choice, options: [adam, sgd]}", "random", "needs 'options' as a mapping"),
    ("optimizer: {type: choice, options: {}}", "random", "needs 'options' as a mapping"),
    ("lr: {type: uniform, low: 0.001, high: 0.01, grid: 0}", "grid", "grid: 0"),
    ("lr: {type: uniform, low: 0.001, high: 0.01, grid: many}", "grid", "grid: 'many'"),
    ("depth: {type: int, low: 1, high: 1.0e+12}", "grid", "grid points"),
    ("width: {type: int, low: 1, high: 1.0e+12}", "tpe", "width must be at most"),
    ("width: {type: quniform, low: 10, high: 12, q: 50}", "random", "width must be positive"),
    ("width: {type: quniform, low: 10, high: 12, q: 50}", "grid", "no grid point"),
    ("lr: {type: quniform, low: 0.001, high: 0.01, q: small}", "random", "needs a step q"),
    ("lr: {type: uniform, low: .nan, high: 0.1}", "random", "finite"),
    ("lr: {type: uniform, lo: 0.001, high: 0.1}", "random", "unknown key(s) lo"),
    ("lr: 0.001\noptimizer: {type: choice, options: {adam: {lr: 0.01}}}", "random", "set both inside"),
    # invalid only for some points: past the first 50 grid points, and in one conditional branch only
    (
        f"width: {{type: choice, values: [8, 16]}}\nlr: {{type: choice, values: [{LRS}, -1.0]}}",
        "grid",
        "lr must be positive",
    ),
    (
        "optimizer:\n  type: choice\n  options:\n    adam: {}\n"
        "    sgd: {momentum: {type: uniform, low: 0.5, high: 1.5}}",
        "tpe",
        "momentum must be in [0, 1)",
    ),
    (b"lr: {type: uniform, low: 0.001, high: 0.1}  # \xe9t\xe9\n", "random", "is not UTF-8"),
    # keys no trial can vary (the search's own settings, the data, the range test's), in a branch too
    (
        "data: /etc/passwd\nlr: {type: uniform, low: 0.001, high: 0.1}",
        "random",
        "'data' cannot vary per trial: the data are loaded and split once",
    ),
    ("target: {type: choice, values: [a, b]}", "grid", "'target' cannot vary per trial"),
    (
        "optimizer:\n  type: choice\n  options:\n    adam: {experiment: other}\n    sgd: {}",
        "tpe",
        "'optimizer=adam/experiment' cannot vary per trial",
    ),
    ("model_name: other\nprogress: true", "random", "registers the trials' runs itself; set model_name=..."),
    ("preset: adamw_cosine", "random", "'preset' cannot vary per trial"),
    ("num_iter: {type: int, low: 50, high: 100}", "random", "A space varies: model, width, depth"),
    ("lr: auto", "random", "'lr: auto' needs the LR range test"),
    ("max_lr: {type: choice, values: [0.01, auto]}", "grid", "'max_lr: auto' needs the LR range test"),
]


@pytest.mark.parametrize("text, strategy, fragment", BAD_SPACES, ids=[str(i) for i in range(len(BAD_SPACES))])
def test_a_bad_space_is_refused_before_anything_is_written(
    text, strategy, fragment, tmp_path, experiment, client, capsys
):
    path = tmp_path / "space.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    models = len(client.search_registered_models())
    capsys.readouterr()
    assert (
        main(
            [
                "search",
                f"space={path}",
                f"strategy={strategy}",
                "max_evals=2",
                "epochs=1",
                f"experiment={experiment}",
                "progress=false",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("hyperflow: error:") and fragment in err and "\n" not in err, err
    exp = mlflow.get_experiment_by_name(experiment)
    assert mlflow.search_runs([exp.experiment_id], output_format="list") == []
    assert len(client.search_registered_models()) == models


AUTO_LR_SETTINGS = {
    "lr": ["lr=auto"],
    "max_lr": ["max_lr=auto"],
    "base_lr": ["schedule=cyclic", "base_lr=auto", "max_lr=0.01"],
}


@pytest.mark.parametrize("name", sorted(AUTO_LR_SETTINGS))
def test_an_auto_lr_setting_is_refused_by_a_search_as_in_a_space(name: str, tmp_path, experiment, client, capsys):
    """Its trials do not run the LR range test: before, each trained at a placeholder lr while the param said
    auto. Refused in one line pointing to lr_bounds=auto, from the command line and from Python alike."""
    models = len(client.search_registered_models())
    capsys.readouterr()
    assert (
        main(
            [
                "search",
                "data=wine",
                *AUTO_LR_SETTINGS[name],
                "max_evals=1",
                "epochs=1",
                "parallelism=1",
                f"experiment={experiment}",
                "progress=false",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [
        f"hyperflow: error: {name}=auto needs the LR range test, which a search's trials "
        f"do not run: pass lr_bounds=auto to run it once and search lr within its range, "
        f"or give {name} a number"
    ], err
    base = build_config(
        {"data": "wine", "epochs": "1", "experiment": experiment, **dict(a.split("=") for a in AUTO_LR_SETTINGS[name])}
    )
    with pytest.raises(UsageError, match=f"^{name}=auto needs the LR range test"):
        run_search(build_search_config({"max_evals": "1", "parallelism": "1"}), base)
    exp = mlflow.get_experiment_by_name(experiment)
    assert exp is None or mlflow.search_runs([exp.experiment_id], output_format="list") == []
    assert len(client.search_registered_models()) == models


@pytest.mark.integration
def test_a_setting_given_pins_its_dimension_of_the_shipped_space(experiment):
    """epochs=1 on the command line: every trial trains 1 epoch (the shipped space's fixed 20 no longer wins),
    and optimizer=adam takes the optimizer (and sgd's momentum) out of the search; a space of your own is
    taken as written."""
    settings = build_search_config({"max_evals": "2", "pruner": "none", "register": "false", "parallelism": "1"})
    base = build_config(
        {"data": "digits", "epochs": "1", "optimizer": "adam", "progress": "false", "experiment": experiment}
    )
    outcome = run_search(settings, base, given={"epochs", "optimizer", "max_evals"})
    assert [r.epochs for r in outcome.records] == [1, 1]
    assert all("optimizer" not in r.params and "momentum" not in r.params for r in outcome.records)
    assert mlflow.get_run(outcome.run_id).data.params["optimizer"] == "adam"  # the trials' base
    assert "width" in outcome.records[0].params  # the rest is still searched
    every = {"lr", "weight_decay", "width", "depth", "dropout", "batch_size", "optimizer", "epochs", "label_smoothing"}
    with pytest.raises(UsageError, match="nothing is left to search"):
        run_search(settings, base, given=every)
