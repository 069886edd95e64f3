"""The search as MLflow's UI shows it: experiments marked for the model-training view, the search run's page linked
to its best trial and model, and its learning-curve and best-so-far plots (drawn from tables logged beside them),
in a small real search (digits, ASHA, a grid of three lrs: two good, one hopeless) cut at two trials and resumed."""

from __future__ import annotations

import multiprocessing
import uuid
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from hyperflow import names, tracking
from hyperflow.config import build_config
from hyperflow.config.search import build_search_config
from hyperflow.workflows.search import search as run_search

KIND, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"
VIEW = "?workflowType=machine_learning"
SETTINGS = {"strategy": "grid", "pruner": "asha", "min_epochs": "1", "reduction_factor": "2", "parallelism": "1"}
SPACE = "lr: {type: choice, values: [0.003, 0.002, 1.0e-7]}\nepochs: 4\n"  # the third is pruned at epoch 1


def _search(experiment: str, model_name: str, **settings: str):
    config = build_search_config({**SETTINGS, "model_name": model_name, "seed_presets": "false", **settings})
    base = {"width": "32", "progress": "false", "schedule": "constant", "experiment": experiment}
    return run_search(config, build_config(base))


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """Two trials, then a resume that runs the third (pruned); what the search run held after each."""
    client, experiment, model_name = mlflow.MlflowClient(), f"ui-{uuid.uuid4().hex[:8]}", f"ui-{uuid.uuid4().hex[:8]}"
    space = tmp_path_factory.mktemp("space") / "space.yaml"
    space.write_text(SPACE)
    first = _search(experiment, model_name, space=str(space), max_evals="2")
    note_first = client.get_run(first.run_id).data.tags[names.NOTE]
    resumed = _search(experiment, model_name, max_evals="3", resume=first.run_id)
    return first, note_first, resumed, client.get_run(resumed.run_id)


def _csv(client, run_id: str, path: str, folder: Path) -> pd.DataFrame:
    return pd.read_csv(client.download_artifacts(run_id, path, str(folder)))


# ------------------------------------------------------------------------------------------ the experiment's view


def test_every_experiment_a_run_goes_to_is_marked_for_the_model_training_view(client, experiment):
    """Named (created here), MLflow's current one (set by the caller), a reopened run's: each tagged once."""
    current = client.get_experiment_by_name(experiment)  # made by the test, as a user's code would: no kind
    assert KIND not in current.tags
    with tracking.tracked_run(names.ROLE_TRAIN) as run:
        pass
    assert run.info.experiment_id == current.experiment_id
    assert client.get_experiment(current.experiment_id).tags[KIND] == MODEL_TRAINING

    named = f"ui-{uuid.uuid4().hex[:8]}"
    with tracking.tracked_run(names.ROLE_TRAIN, experiment=named) as run:
        pass
    assert client.get_experiment(run.info.experiment_id).tags[KIND] == MODEL_TRAINING

    other = client.create_experiment(f"ui-{uuid.uuid4().hex[:8]}")
    finished = client.create_run(other).info.run_id
    client.set_terminated(finished)
    with tracking.tracked_run(names.ROLE_SEARCH, run_id=finished):
        pass
    assert client.get_experiment(other).tags[KIND] == MODEL_TRAINING


def test_a_kind_the_user_chose_stays(client):
    name = f"ui-{uuid.uuid4().hex[:8]}"
    experiment_id = client.create_experiment(name, tags={KIND: "genai_development"})
    with tracking.tracked_run(names.ROLE_TRAIN, experiment=name):
        pass
    assert client.get_experiment(experiment_id).tags[KIND] == "genai_development"


def _use_at_barrier(barrier, uri: str, experiment: str, out) -> None:
    mlflow.set_tracking_uri(uri)
    barrier.wait()
    try:
        with tracking.tracked_run(names.ROLE_TRAIN, experiment=experiment) as run:
            out.put(run.info.experiment_id)
    except Exception as exc:  # the test shows what a command would have said
        out.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.integration  # processes released together, as jobs a schedule starts at one minute
def test_commands_starting_together_in_one_experiment_all_get_it(client):
    """The experiment new to all of them, or there but not yet marked (MLflow's stores have no insert-if-missing:
    a second insert of one name or tag fails): each process's run goes to the one experiment, marked once."""
    context, jobs = multiprocessing.get_context("fork"), 4
    for existing in (False, True, False, True):
        name = f"together-{uuid.uuid4().hex[:8]}"
        if existing:
            client.create_experiment(name)
        barrier, out = context.Barrier(jobs), context.Queue()
        procs = [
            context.Process(target=_use_at_barrier, args=(barrier, mlflow.get_tracking_uri(), name, out))
            for _ in range(jobs)
        ]
        for proc in procs:
            proc.start()
        results = [out.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join()
        experiment = client.get_experiment_by_name(name)
        assert results == [experiment.experiment_id] * jobs, results
        assert experiment.tags[KIND] == MODEL_TRAINING


def test_the_printed_link_opens_the_run_in_the_model_training_view():
    assert tracking.run_page("3", "abc") == f"#/experiments/3/runs/abc{VIEW}"


# ------------------------------------------------------------------------------------------ links on the search run


@pytest.mark.integration
def test_the_search_run_links_its_best_trial_and_its_model(searched, client):
    first, note_first, resumed, run = searched
    best = resumed.best
    assert best.number == first.best.number and best.status == "ok"
    assert client.get_experiment(resumed.experiment_id).tags[KIND] == MODEL_TRAINING
    name, version = resumed.registered
    note = run.data.tags[names.NOTE]  # the run's description, which the UI renders as markdown
    for text in (note_first, note):
        assert f"[trial {best.number}](#/experiments/{resumed.experiment_id}/runs/{best.run_id}{VIEW})" in text
        assert f"[{name} version {version}](#/models/{name}/versions/{version})" in text
    assert "(of 2 trials: 2 ok, 0 failed, 0 pruned)" in note_first and "(of 3 trials: 2 ok, 0 failed, 1 pruned)" in note
    model = tracking.finished_model(best.run_id)
    assert resumed.model_id == model.model_id
    # the model as the search run's output: the page's Logged models and Registered models; once, though resumed
    assert [(o.model_id, o.step) for o in run.outputs.model_outputs] == [(model.model_id, best.number)]


@pytest.mark.integration
def test_a_description_someone_else_wrote_stays(searched, client):
    _, _, resumed, _ = searched
    client.set_tag(resumed.run_id, names.NOTE, "tuned for the March release")
    try:
        experiment = client.get_experiment(resumed.experiment_id).name
        again = _search(experiment, resumed.registered[0], max_evals="3", resume=resumed.run_id)  # no trial left
        run = client.get_run(again.run_id)
        assert run.data.tags[names.NOTE] == "tuned for the March release"
        assert len(run.outputs.model_outputs) == 1
    finally:
        client.set_tag(resumed.run_id, names.NOTE, searched[1])


# ------------------------------------------------------------------------------------------ the search's curves


@pytest.mark.integration
def test_the_search_run_carries_every_trials_learning_curve_with_the_pruned_marked(searched, client, tmp_path):
    """Drawn again at the resume's end: the two trials read back from MLflow and the one the resume ran."""
    resumed = searched[2]
    paths = {a.path for a in client.list_artifacts(resumed.run_id, "plots")}
    assert {"plots/learning_curves.png", "plots/best_so_far.png"} <= paths
    assert {"plots/search_progress.png", "plots/learning_curves.csv", "plots/best_so_far.csv"} <= paths
    png = Path(client.download_artifacts(resumed.run_id, "plots/learning_curves.png", str(tmp_path)))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curves = _csv(client, resumed.run_id, "plots/learning_curves.csv", tmp_path)
    assert list(curves.columns) == ["trial", "status", "step", "value"]
    by_trial = {n: rows for n, rows in curves.groupby("trial")}
    assert sorted(by_trial) == [0, 1, 2]
    for record in resumed.records:
        rows = by_trial[record.number]
        assert set(rows["status"]) == {record.status}
        assert rows["step"].tolist() == list(range(1, record.epochs + 1))
        assert rows["value"].tolist() == pytest.approx(record.history, rel=1e-5)
    assert [(r.status, r.epochs) for r in resumed.records] == [("ok", 4), ("ok", 4), ("pruned", 1)]


@pytest.mark.integration
def test_the_best_so_far_is_drawn_against_the_units_of_work(searched, client, tmp_path):
    _, _, resumed, run = searched
    table = _csv(client, resumed.run_id, "plots/best_so_far.csv", tmp_path)
    assert list(table.columns) == ["trial", "status", "loss", "units", "best"]
    assert table["units"].tolist() == [4, 8, 9] and table["units"].iloc[-1] == run.data.metrics[names.UNITS_USED]
    first_two = min(r.loss for r in resumed.records[:2])
    assert table["best"].tolist() == pytest.approx([resumed.records[0].loss, first_two, first_two])
    assert table["best"].iloc[-1] == pytest.approx(run.data.metrics[names.BEST_VAL_LOSS])


def test_the_learning_curves_cross_a_pruned_trial_where_it_stopped_and_skip_what_is_not_finite():
    """Drawn from the figure's own data: the crosses at the pruned trials' last points, the bold line the best's."""
    from matplotlib.collections import PathCollection

    from hyperflow.core.search_plots import curves_table, learning_curves

    inf, nan = float("inf"), float("nan")
    table = curves_table(
        [0, 1, 2, 3], ["ok", "pruned", "failed", "pruned"], [[1.0, inf, 0.5], [2.0, 1.5], [nan], [3.0]]
    )
    assert table["status"].tolist() == ["ok", "ok", "ok", "pruned", "pruned", "failed", "pruned"]
    ax = learning_curves(table, best=0).axes[0]
    (crosses,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert crosses.get_offsets().tolist() == [[2.0, 1.5], [1.0, 3.0]]
    (bold,) = ax.get_lines()
    assert bold.get_xydata().tolist() == [[1.0, 1.0], [3.0, 0.5]]  # the best trial, its non-finite value left out
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["pruned (× where stopped)", "best: trial 0"]  # the only ok trial is the best; the failed one
    # reported nothing finite: no line, no entry
