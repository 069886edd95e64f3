"""Rows a model cannot use as they are: no feature column, no rows, values that are not numbers or dates or
are too large, output columns already in the input; and the mode of the file predict writes."""

import copy
import logging
import os
import stat
import sys
import uuid
import warnings

import forked
import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException

from hyperflow.cli import main
from hyperflow.config import build_config
from hyperflow.tracking.model import predict_bundle
from hyperflow.workflows.train import train

COLUMNS = ["age", "income", "plan", "active", "joined"]


@pytest.fixture(scope="module")
def churn(tmp_path_factory) -> str:
    """The URI of a small classifier trained on numeric, categorical, bool and date columns."""
    rng = np.random.default_rng(0)
    n = 240
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, n),
            "income": rng.normal(5e4, 1e4, n),
            "plan": rng.choice(["free", "pro", "team"], n),
            "active": rng.choice([True, False], n),
            "joined": pd.date_range("2020-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
        }
    )
    frame["churn"] = np.where(frame["age"] > 50, "yes", "no")
    path = tmp_path_factory.mktemp("churn") / "churn.csv"
    frame.to_csv(path, index=False)
    mlflow.set_experiment("predict-inputs")
    name = f"churn-{uuid.uuid4().hex[:8]}"
    train(
        build_config(
            {"data": str(path), "target": "churn", "epochs": "1", "width": "8", "progress": "false", "model_name": name}
        )
    )
    return f"models:/{name}/1"


def good_rows(n: int = 4) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [30, 60, 45, 70][:n],
            "income": [4e4, 6e4, 5e4, 5.5e4][:n],
            "plan": ["pro", "free", "team", "pro"][:n],
            "active": [True, False, True, False][:n],
            "joined": ["2020-03-01", "2020-06-01", "2020-02-11", "2020-05-05"][:n],
        }
    ).astype(object)


def run_predict(churn, tmp_path, capsys, rows: pd.DataFrame | None, *extra: str, text: str | None = None):
    data = tmp_path / "rows.csv"
    if text is not None:
        data.write_text(text)
    else:
        rows.to_csv(data, index=False)
    out = tmp_path / "out.csv"
    code = main(["predict", f"model={churn}", f"data={data}", f"out={out}", *extra])
    return code, capsys.readouterr().err.strip(), out


# ------------------------------------------------------------------------------- nothing to score


@pytest.mark.parametrize(
    "case, extra, message",
    [
        ("no_model_column", ["allow_missing_columns=true"], "has none of the columns of model"),
        ("no_model_column", [], "has none of the columns of model"),
        ("header_only", [], "rows.csv"),  # read_table's own wording
        ("empty_file", [], "rows.csv"),
    ],
)
def test_nothing_to_score_is_one_line_and_writes_nothing(churn, tmp_path, capsys, case, extra, message):
    text = {"no_model_column": "foo,bar\n1,a\n2,b\n", "header_only": ",".join(COLUMNS) + "\n", "empty_file": ""}
    code, err, out = run_predict(churn, tmp_path, capsys, None, *extra, text=text[case])
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    if case == "no_model_column":
        assert "age, income, plan, active, joined" in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["rows.csv"]


@pytest.mark.parametrize("params", [None, {"allow_missing_columns": True}])
def test_the_model_refuses_rows_without_any_of_its_columns(churn, params):
    model = mlflow.pyfunc.load_model(churn)
    for rows in (pd.DataFrame({"foo": [1, 2]}), pd.DataFrame()):
        with pytest.raises(MlflowException, match=r"none of the model's feature columns .*age, income, plan"):
            model.predict(rows, params=params)


def test_zero_rows_give_zero_predictions(churn):
    scored = mlflow.pyfunc.load_model(churn).predict(good_rows().iloc[:0])
    assert len(scored) == 0 and list(scored.columns) == ["prediction", "probability_no", "probability_yes"]


# ------------------------------------------------------------------------------- unusable values

UNUSABLE = {
    "income": [1e308, float("inf"), "-inf", 1e300],
    "age": ["abc", "47yrs", 30, 60],
    "joined": ["garbage", "2020-06-01", "2020-02-11", "2020-05-05"],
}
AS_MISSING = {
    "income": [None] * 4,
    "age": [None, None, 30, 60],
    "joined": [None, "2020-06-01", "2020-02-11", "2020-05-05"],
}


def test_unusable_values_are_imputed_like_missing_ones_and_named(churn, caplog):
    model = mlflow.pyfunc.load_model(churn)
    rows, missing = good_rows().assign(**UNUSABLE), good_rows().assign(**AS_MISSING)
    with caplog.at_level(logging.WARNING, logger="hyperflow"), warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no overflow on the way
        scored = model.predict(rows)
    probabilities = scored[["probability_no", "probability_yes"]].to_numpy()
    assert np.isfinite(probabilities).all() and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    pd.testing.assert_frame_equal(scored, model.predict(missing))
    told = [r.getMessage() for r in caplog.records if r.name.startswith("hyperflow")]
    assert len(told) == 3, told  # one line per column
    assert any("'income': 4 row(s)" in t and "1e+308" in t for t in told)
    assert any("'age': 2 row(s)" in t and "'abc'" in t for t in told)
    assert any("'joined': 1 row(s)" in t and "dates" in t and "'garbage'" in t for t in told)


@pytest.mark.integration
def test_batch_predictions_warn_on_stderr_about_unusable_values(churn, tmp_path, tracking_uri):
    rows = good_rows()
    rows["income"] = UNUSABLE["income"]
    data, out = tmp_path / "rows.csv", tmp_path / "out.csv"
    rows.to_csv(data, index=False)
    done = forked.run(
        [sys.executable, "-m", "hyperflow", "predict", f"model={churn}", f"data={data}", f"out={out}"],
        capture_output=True,
        text=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri},
    )
    assert done.returncode == 0, done.stderr
    told = [line for line in done.stderr.splitlines() if "hyperflow" in line and "income" in line]
    assert len(told) == 1 and "4 row(s)" in told[0] and "treated as missing" in told[0], done.stderr
    assert "overflow" not in done.stderr
    assert np.isfinite(pd.read_csv(out)[["probability_no", "probability_yes"]].to_numpy()).all()


def test_a_network_that_overflows_is_an_error_not_nan(churn):
    """The last guard: inputs within float32's range can still overflow a network (here one with larger
    first-layer weights); the rows are named instead of answered with NaN."""
    model = mlflow.pyfunc.load_model(churn).unwrap_python_model()
    louder = copy.deepcopy(model.model)
    with torch.no_grad():
        next(louder.parameters()).mul_(1e20)  # the first layer's weights
    rows = good_rows()
    rows["income"] = [4e4, 1e30, 5e4, 1e30]
    with pytest.raises(MlflowException, match=r"2 row\(s\) \(e.g. row 1, counting from 0\) have no finite prediction"):
        predict_bundle(model.bundle, louder, rows)
    assert len(predict_bundle(model.bundle, model.model, rows)) == 4


# ------------------------------------------------------------------------------- the output file


def test_input_columns_named_like_the_output_are_refused(churn, tmp_path, capsys):
    rows = good_rows().assign(prediction="old", probability_yes=0.5)
    code, err, out = run_predict(churn, tmp_path, capsys, rows)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "already has column(s) prediction, probability_yes" in err and "rename or drop them" in err
    assert not out.exists()


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o027, 0o640)])
def test_the_output_file_gets_the_usual_mode(churn, tmp_path, capsys, umask, expected):
    previous = os.umask(umask)
    try:
        code, err, out = run_predict(churn, tmp_path, capsys, good_rows())
    finally:
        os.umask(previous)
    assert code == 0, err
    assert stat.S_IMODE(out.stat().st_mode) == expected


def test_a_replaced_output_file_keeps_its_mode(churn, tmp_path, capsys):
    out = tmp_path / "out.csv"
    out.write_text("old")
    out.chmod(0o604)
    code, err, out = run_predict(churn, tmp_path, capsys, good_rows())
    assert code == 0, err
    assert stat.S_IMODE(out.stat().st_mode) == 0o604 and len(pd.read_csv(out)) == 4


# ------------------------------------------------------------------------------- model URIs that name no model


def _installed(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.parametrize(
    "uri, message",
    [
        ("http://127.0.0.1:1/m", "must name a path in an MLflow server's artifacts"),
        ("https://alice:s3cret@127.0.0.1:1/m", "must name a path in an MLflow server's artifacts"),
        ("http://alice:s3cret@127.0.0.1:1/api/2.0/mlflow-artifacts/artifacts/m", "Connection refused"),
        ("ftp://alice:s3cret@127.0.0.1:1/m", "Connection refused"),
        pytest.param(
            "s3://no-bucket/m",
            "pip install boto3",
            marks=pytest.mark.skipif(_installed("botocore"), reason="boto3 is installed"),
        ),
        pytest.param(
            "gs://no-bucket/m",
            "pip install google-cloud-storage",
            marks=pytest.mark.skipif(_installed("google.cloud"), reason="google-cloud-storage is installed"),
        ),
        ("{tmp}/no-such-model", "No such artifact"),
        ("{tmp}", "MLmodel"),  # a folder that holds no model
        ("runs:/0123456789abcdef0123456789abcdef/model", "not found"),
        ("runs:/{run}/no-such-artifact", "Failed to download artifacts"),
        ("models:/no-such-model-anywhere/1", "not found"),
        ("{name}/99", "not found"),
        ("{name}@no-such-alias", "alias no-such-alias not found"),
    ],
)
def test_a_model_uri_that_names_no_model_is_one_line(churn, tmp_path, capsys, monkeypatch, uri, message):
    """Every kind of model URI: one line, exit 2, no credentials shown, nothing written."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a refused connection is told at once
    name = churn.rsplit("/", 1)[0]
    run = mlflow.MlflowClient().get_model_version(name.split("/", 1)[1], "1").run_id
    good_rows().to_csv(tmp_path / "rows.csv", index=False)
    model = uri.format(tmp=tmp_path, run=run, name=name)
    code = main(["predict", f"model={model}", f"data={tmp_path / 'rows.csv'}", f"out={tmp_path / 'out.csv'}"])
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert "s3cret" not in captured.err + captured.out and "alice" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.csv"]


# ------------------------------------------------------------------------------- where predictions may go


@pytest.mark.parametrize(
    "out, message",
    [
        ("{data}", "is the input file"),
        ("{link}", "is the input file"),  # a link to it
        ("{tmp}/no/such/folder/out.csv", "folder '{tmp}/no/such/folder' does not exist"),
        ("{data}/out.csv", "is a file, not a folder"),
        ("{tmp}/a-folder.csv", "is a folder"),
        ("{tmp}/out.json", "writes .csv or .parquet"),
        ("{tmp}/out", "writes .csv or .parquet"),
        ("{tmp}/pipe.csv", "not a regular file"),
    ],
)
def test_an_out_that_cannot_hold_the_predictions_is_refused_before_scoring(churn, tmp_path, capsys, out, message):
    """The input is never replaced, no folder is created, and nothing is scored."""
    data = tmp_path / "rows.csv"
    good_rows().to_csv(data, index=False)
    before = data.read_bytes()
    (tmp_path / "link.csv").symlink_to(data)
    (tmp_path / "a-folder.csv").mkdir()
    os.mkfifo(tmp_path / "pipe.csv")
    listing = sorted(p.name for p in tmp_path.iterdir())
    fill = {"data": data, "link": tmp_path / "link.csv", "tmp": tmp_path}
    code = main(["predict", f"model={churn}", f"data={data}", f"out={out.format(**fill)}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message.format(**fill) in err and len(err.splitlines()) == 1, err
    assert data.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == listing
