"""The champion in use: served over HTTP by alias (a real `mlflow models serve` process) and batch scoring."""

import io
import uuid

import mlflow
import pandas as pd
import pytest
from test_lifecycle import invoke, serve_model
from test_registry import items_csv

from hyperflow.cli import main
from hyperflow.config import build_config
from hyperflow.workflows.promote import PromoteConfig, promote
from hyperflow.workflows.train import train


@pytest.fixture(scope="module")
def champion(tmp_path_factory) -> str:
    """The URI of a promoted classifier: models:/<name>@champion."""
    data = items_csv(tmp_path_factory.mktemp("predict") / "items.csv", seed=3)
    mlflow.set_experiment("predict-tests")
    name = f"served-{uuid.uuid4().hex[:8]}"
    outcome = train(
        build_config(
            {
                "data": data,
                "target": "kind",
                "width": "16",
                "epochs": "15",
                "lr": "0.01",
                "progress": "false",
                "model_name": name,
            }
        )
    )
    assert promote(PromoteConfig(model_name=name, version=str(outcome.registered_version), allow_first=True)).promoted
    return f"models:/{name}@champion"


RAW = [
    {"colour": "red", "size": 16.0},
    {"size": "4", "colour": None},
    {"size": 12.5, "colour": "purple"},
    {"colour": "blue"},
]  # any column order, numbers as text, missing values, an unseen category, a missing column


@pytest.mark.integration
def test_batch_predictions_append_labels_and_probabilities(champion, tmp_path, capsys):
    pd.DataFrame(RAW).to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "scored" / "preds.csv"
    out.parent.mkdir()  # predict creates no folder
    assert main(["predict", f"model={champion}", f"data={tmp_path / 'new.csv'}", f"out={out}"]) == 0
    assert "4 rows scored" in capsys.readouterr().out
    scored = pd.read_csv(out)
    assert list(scored.columns) == ["colour", "size", "prediction", "probability_big", "probability_small"]
    assert scored["prediction"].tolist()[:3] == ["big", "small", "big"]
    assert ((scored["probability_big"] + scored["probability_small"] - 1).abs() < 1e-5).all()
    assert scored["prediction"].isin(["big", "small"]).all()


@pytest.mark.integration
def test_predict_without_out_prints_csv_to_stdout_and_writes_no_file(champion, tmp_path, monkeypatch, capsys):
    pd.DataFrame(RAW).to_csv(tmp_path / "new.csv", index=False)
    monkeypatch.chdir(tmp_path)  # before, predictions.csv landed here
    capsys.readouterr()
    assert main(["predict", f"model={champion}", "data=new.csv"]) == 0
    out, err = capsys.readouterr()
    scored = pd.read_csv(io.StringIO(out))  # stdout is the table and nothing else
    assert list(scored.columns) == ["colour", "size", "prediction", "probability_big", "probability_small"]
    assert len(scored) == 4 and scored["prediction"].tolist()[:3] == ["big", "small", "big"]
    assert f"hyperflow predict: 4 rows scored with {champion} -> stdout" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.csv"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["model=models:/no-such-model@champion", "data={csv}"], "cannot load model 'models:/no-such-model@champion'"),
        (["model={model}", "data={csv}", "out="], "out is empty"),
        (["model={model}", "data=missing.csv"], "data 'missing.csv' not found"),
        (["model={model}", "data={csv}", "out=preds.json"], "writes .csv or .parquet"),
        (["data={csv}"], "predict needs model=<URI> and data=<file>"),
    ],
)
def test_predict_bad_input_is_one_line_and_writes_nothing(champion, tmp_path, monkeypatch, capsys, args, message):
    pd.DataFrame(RAW).to_csv(tmp_path / "new.csv", index=False)
    monkeypatch.chdir(tmp_path)  # a relative out= would land here
    code = main(["predict", *(a.format(csv=tmp_path / "new.csv", model=champion) for a in args)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.csv"]


@pytest.mark.integration
def test_the_champion_serves_raw_rows_by_alias(champion, tracking_uri):
    with serve_model(champion, tracking_uri) as port:
        answer = invoke(port, RAW)
    assert len(answer) == 4 and [a["prediction"] for a in answer[:3]] == ["big", "small", "big"]
    assert all(abs(a["probability_big"] + a["probability_small"] - 1) < 1e-5 for a in answer)
    local = mlflow.pyfunc.load_model(champion).predict(pd.DataFrame(RAW))
    assert [a["probability_big"] for a in answer] == pytest.approx(local["probability_big"].tolist(), abs=1e-6)
