"""The raw-row contract on real tables: every common column dtype, from a CSV or Parquet file through
training, the registered model and pyfunc to a real `mlflow models serve` over HTTP; missing columns,
non-finite values and files that are not tables."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
import uuid

import mlflow
import numpy as np
import pandas as pd
import pytest
from test_lifecycle import serve_model

from hyperflow.cli import main
from hyperflow.config import build_config
from hyperflow.core.column_kinds import column_kinds
from hyperflow.workflows.train import train

N = 160


def _signal(rng: np.random.Generator) -> np.ndarray:
    return rng.normal(10, 3, N)


# column name -> a function of (rng) giving that dtype's column
DTYPES = {
    "int8": lambda r: r.integers(-5, 5, N).astype("int8"),
    "int16": lambda r: r.integers(-300, 300, N).astype("int16"),
    "int32": lambda r: r.integers(0, 10, N).astype("int32"),
    "int64": lambda r: r.integers(1990, 2024, N).astype("int64"),
    "uint8": lambda r: r.integers(0, 200, N).astype("uint8"),
    "uint64": lambda r: r.integers(0, 1000, N).astype("uint64"),
    "Int64": lambda r: pd.array(np.where(r.random(N) < 0.2, None, r.integers(0, 9, N)), dtype="Int64"),
    "boolean": lambda r: pd.array(np.where(r.random(N) < 0.2, None, r.random(N) < 0.5), dtype="boolean"),
    "bool": lambda r: r.random(N) < 0.5,
    "float32": lambda r: r.normal(size=N).astype("float32"),
    "float64": lambda r: np.where(r.random(N) < 0.1, np.nan, r.normal(size=N)),
    "category": lambda r: pd.Categorical(r.choice(["a", "b", "c"], N)),
    "string": lambda r: r.choice(["red", "blue", None], N),
    "datetime": lambda r: pd.date_range("2020-01-01", periods=N, freq="37h"),
    "id": lambda r: [f"user-{i:05d}" for i in r.permutation(N)],
    "constant": lambda r: np.full(N, 7),
}
# what a JSON client may send for each column: numbers of the other kind, text, bools, null
SENT = {
    "int8": 2.0,
    "int16": "17",
    "int32": True,
    "int64": 2001.5,
    "uint8": None,
    "uint64": "12",
    "Int64": 3,
    "boolean": 1,
    "bool": "true",
    "float32": 1,
    "float64": "0.5",
    "category": "b",
    "string": 3,
    "datetime": "2021-06-01T12:00:00",
    "id": "user-99999",
    "constant": 7.0,
}


def _table(tmp_path, dtype: str, fmt: str, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    signal = _signal(rng)
    frame = pd.DataFrame({"signal": signal, dtype: DTYPES[dtype](rng)})
    frame["kind"] = np.where(signal > 10, "big", "small")
    path = tmp_path / f"{dtype}.{fmt}"
    frame.to_parquet(path) if fmt == "parquet" else frame.to_csv(path, index=False)
    return str(path)


def test_column_kinds_cover_every_dtype():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({name: make(rng) for name, make in DTYPES.items()})
    frame["numbers_as_text"] = [str(v) for v in rng.normal(size=N)]
    frame.loc[3, "numbers_as_text"] = "?"
    frame["dates_as_text"] = [str(d.date()) for d in pd.date_range("2019-05-01", periods=N)]
    kinds = column_kinds(frame)
    assert kinds == {
        **{
            n: "numeric"
            for n in (
                "int8",
                "int16",
                "int32",
                "int64",
                "uint8",
                "uint64",
                "Int64",
                "boolean",
                "bool",
                "float32",
                "float64",
                "constant",
                "numbers_as_text",
            )
        },
        "category": "categorical",
        "string": "categorical",
        "datetime": "datetime",
        "dates_as_text": "datetime",
        "id": "id",
    }


@pytest.mark.integration
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_every_dtype_trains_registers_and_predicts_raw_rows(tmp_path, experiment, dtype, fmt):
    name = f"dtype-{uuid.uuid4().hex[:6]}"
    outcome = train(
        build_config(
            {
                "data": _table(tmp_path, dtype, fmt),
                "target": "kind",
                "epochs": "10",
                "width": "8",
                "lr": "0.1",
                "progress": "false",
                "experiment": experiment,
                "model_name": name,
            }
        )
    )
    assert str(outcome.registered_version) == "1"
    model = mlflow.pyfunc.load_model(f"models:/{name}/1")
    expected = ["signal"] + ([] if dtype == "id" else [dtype])  # ID-like columns are left out
    assert model.metadata.signature.inputs.input_names() == expected
    rows = pd.DataFrame(
        [
            {"signal": 14.0, dtype: SENT[dtype]},
            {"signal": "6", dtype: None},
            {"signal": 5, dtype: SENT[dtype], "unknown_extra": "x"},
        ]
    )
    out = model.predict(rows)
    assert out["prediction"].tolist() == ["big", "small", "small"]
    assert np.isfinite(out[["probability_big", "probability_small"]].to_numpy()).all()
    assert ((out["probability_big"] + out["probability_small"] - 1).abs() < 1e-5).all()


@pytest.fixture(scope="module")
def all_dtypes_model(tmp_path_factory) -> tuple[str, list[str]]:
    """One model trained on a Parquet table holding every dtype at once; (model URI, its columns)."""
    rng = np.random.default_rng(1)
    signal = _signal(rng)
    frame = pd.DataFrame({"signal": signal, **{name: make(rng) for name, make in DTYPES.items()}})
    frame["kind"] = np.where(signal > 10, "big", "small")
    path = tmp_path_factory.mktemp("dtypes") / "everything.parquet"
    frame.to_parquet(path)
    mlflow.set_experiment("dtype-serving")
    name = f"everything-{uuid.uuid4().hex[:6]}"
    train(
        build_config(
            {
                "data": str(path),
                "target": "kind",
                "epochs": "20",
                "width": "16",
                "lr": "0.01",
                "progress": "false",
                "model_name": name,
            }
        )
    )
    return f"models:/{name}/1", [c for c in frame.columns if c not in ("kind", "id")]


def _post(port: int, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.integration
def test_served_model_takes_any_json_types_and_names_missing_columns(all_dtypes_model, tracking_uri):
    uri, columns = all_dtypes_model
    sent = {"signal": 14, **{c: SENT[c] for c in columns if c != "signal"}}
    as_text = {c: (None if v is None else str(v)) for c, v in sent.items()}
    nulls = {**{c: None for c in columns}, "signal": 6.5}
    with serve_model(uri, tracking_uri) as port:
        records = [sent, as_text, nulls, {**sent, "not_a_feature": 1}]
        code, body = _post(port, {"dataframe_records": records})
        assert code == 200, body
        local = mlflow.pyfunc.load_model(uri).predict(pd.DataFrame(records))
        assert [p["prediction"] for p in body["predictions"]] == local["prediction"].tolist()
        assert [p["probability_big"] for p in body["predictions"]] == pytest.approx(
            local["probability_big"].tolist(), abs=1e-6
        )
        code, body = _post(port, {"dataframe_split": {"columns": list(sent), "data": [list(sent.values())]}})
        assert code == 200, body
        without = {k: v for k, v in sent.items() if k not in ("signal", "int64")}
        code, body = _post(port, {"dataframe_records": [without]})
        assert code == 400 and "missing feature columns: signal, int64." in body["message"], body
        code, body = _post(port, {"dataframe_records": [{"colour": "red", "weight": 3}]})
        assert code == 400 and "none of the model's feature columns" in body["message"], body
        code, body = _post(port, {"dataframe_records": [without], "params": {"allow_missing_columns": True}})
        assert code == 200 and len(body["predictions"]) == 1, body


def test_logged_signature_and_example_agree_with_predict(all_dtypes_model):
    uri, columns = all_dtypes_model
    model = mlflow.pyfunc.load_model(uri)
    assert model.metadata.signature.inputs.input_names() == columns
    from mlflow.models import Model

    local = mlflow.artifacts.download_artifacts(uri)
    example = Model.load(local).load_input_example(local)
    assert list(example.columns) == columns
    assert len(model.predict(example)) == len(example)  # MLflow's own schema enforcement passes


# ------------------------------------------------------------------------------------------ bad tables


def _csv(tmp_path, name: str, frame: pd.DataFrame) -> str:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


def _runs(experiment: str) -> list:
    exp = mlflow.get_experiment_by_name(experiment)
    return [] if exp is None else mlflow.search_runs([exp.experiment_id], output_format="list")


BAD_VALUES = {
    "inf_feature": (
        {"size": [1.0, np.inf, 3.0] * 20, "kind": ["a", "b", "a"] * 20},
        "kind",
        "feature column(s) 'size' (20 rows) hold inf/-inf",
    ),
    "minus_inf_feature": (
        {"size": [1.0, -np.inf, 3.0] * 20, "kind": ["a", "b", "a"] * 20},
        "kind",
        "'size' (20 rows) hold inf/-inf",
    ),
    "inf_target": (
        {"size": [1.0, 2.0, 3.0] * 20, "price": [1.5, np.inf, 2.5] * 20},
        "price",
        "target 'price' holds inf/-inf in 20 rows",
    ),
    "huge_feature": (
        {"size": [1e308, -1e308, 3.0] * 20, "kind": ["a", "b", "a"] * 20},
        "kind",
        "column(s) size hold values too large to train on",
    ),
    "huge_target": (
        {"size": [1.0, 2.0, 3.0] * 20, "price": [1e300, -1e300, 2.5] * 20},
        "price",
        "target 'price' has values too large to train on",
    ),
}


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_non_finite_values_are_refused_at_load_naming_the_column(tmp_path, experiment, capsys, case):
    columns, target, message = BAD_VALUES[case]
    path = _csv(tmp_path, "bad.csv", pd.DataFrame(columns))
    code = main(["train", f"data={path}", f"target={target}", "epochs=1", f"experiment={experiment}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert _runs(experiment) == []


def test_files_that_are_not_tables_are_refused_in_one_line(tmp_path, experiment, capsys):
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(bytes(range(256)) * 40)
    fifo = tmp_path / "rows.csv"
    os.mkfifo(fifo)  # reading it would block forever: refused without opening it
    for data, message in [
        (garbage, "is a binary file, not a CSV"),
        (fifo, "is not a regular file"),
        ("/dev/zero", "is not a regular file"),
        (tmp_path, "is a folder"),
    ]:
        code = main(["train", f"data={data}", "target=kind", f"experiment={experiment}"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert _runs(experiment) == []


def test_a_cp1252_csv_is_read(tmp_path, experiment):
    frame = pd.DataFrame({"city": ["Zürich", "Malmö", "Köln"] * 20, "size": np.arange(60.0), "kind": ["a", "b"] * 30})
    path = tmp_path / "excel.csv"
    frame.to_csv(path, index=False, sep=";", encoding="cp1252")
    outcome = train(
        build_config(
            {
                "data": str(path),
                "target": "kind",
                "epochs": "1",
                "progress": "false",
                "experiment": experiment,
                "log_model": "false",
                "batch_size": "16",
            }
        )
    )
    assert outcome.result.epochs_run == 1


# ------------------------------------------------------------------------------------------ predict


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> str:
    rng = np.random.default_rng(4)
    frame = pd.DataFrame(
        {
            "size": rng.normal(10, 3, 120),
            "colour": rng.choice(["red", "blue"], 120),
            "year": rng.integers(1990, 2020, 120),
        }
    )
    frame["kind"] = np.where(frame["size"] > 10, "big", "small")
    path = tmp_path_factory.mktemp("predict") / "items.csv"
    frame.to_csv(path, index=False)
    mlflow.set_experiment("predict-contract")
    outcome = train(
        build_config({"data": str(path), "target": "kind", "epochs": "2", "width": "8", "progress": "false"})
    )
    return outcome.model_uri


def test_predict_refuses_missing_columns_unless_allowed(small_model, tmp_path, capsys):
    rows = tmp_path / "rows.csv"
    pd.DataFrame({"size": [12.0, 3.0], "colour": ["red", None]}).to_csv(rows, index=False)
    out = tmp_path / "out.csv"
    assert main(["predict", f"model={small_model}", f"data={rows}", f"out={out}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "missing feature columns: year" in err and len(err.splitlines()) == 1 and not out.exists()
    assert main(["predict", f"model={small_model}", f"data={rows}", f"out={out}", "allow_missing_columns=true"]) == 0
    assert len(pd.read_csv(out)) == 2


@pytest.mark.parametrize("case", ["garbage", "fifo", "unwritable_out", "out_is_folder"])
def test_predict_bad_input_is_one_line_and_writes_nothing(small_model, tmp_path, capsys, case):
    rows = tmp_path / "rows.csv"
    pd.DataFrame({"size": [12.0], "colour": ["red"], "year": [2000]}).to_csv(rows, index=False)
    out = tmp_path / "out.csv"
    if case == "garbage":
        rows.write_bytes(os.urandom(4000).replace(b"\n", b"") + b"\x00")
    elif case == "fifo":
        rows.unlink()
        os.mkfifo(rows)
    elif case == "unwritable_out":
        out = rows / "out.csv"  # under a file: no folder can be made there
    else:
        out = tmp_path
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code = main(["predict", f"model={small_model}", f"data={rows}", f"out={out}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


# ------------------------------------------------------------------------------------------ names


def test_run_names_are_unique_and_say_what_the_run_is(experiment):
    config = build_config(
        {"data": "wine", "epochs": "1", "progress": "false", "experiment": experiment, "log_model": "false"}
    )
    first, second = train(config), train(config)
    names = [mlflow.get_run(o.run_id).info.run_name for o in (first, second)]
    assert names[0] != names[1] and all(n.startswith("train-wine-") for n in names)


def test_default_registered_name_carries_the_target_for_files(tmp_path):
    from hyperflow.core.loading import load_dataset

    path = _table(tmp_path, "int64", "csv")
    assert load_dataset(path, "kind").default_model_name == "hyperflow-int64-kind"
    assert load_dataset("wine").default_model_name == "hyperflow-wine"
