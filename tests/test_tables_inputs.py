"""Unusual but good table files are read as meant (decimal commas, separators, encodings, Parquet under
any suffix, float class targets); bad ones (duplicate names, mixed decimal marks, too few rows) are refused
in one line that names the problem."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hyperflow.cli import main
from hyperflow.core.loading import load_dataset, precheck_source
from hyperflow.core.table_files import check_path, read_table
from hyperflow.errors import UsageError
from hyperflow.workflows.predict import predict_file

N = 300


def _frame(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x1": rng.normal(size=N), "x2": rng.normal(size=N), "c": rng.choice(["a", "é"], N)})
    frame["y"] = (frame["x1"] > 0).astype(int)
    return frame


WRITERS = {
    "semicolon_decimal_comma.csv": lambda f, p: f.to_csv(p, sep=";", decimal=",", index=False),
    "tab_decimal_comma.tsv": lambda f, p: f.to_csv(p, sep="\t", decimal=",", index=False),
    "tab_decimal_comma.csv": lambda f, p: f.to_csv(p, sep="\t", decimal=",", index=False),
    "pipe.csv": lambda f, p: f.to_csv(p, sep="|", index=False),
    "pipe_decimal_comma.txt": lambda f, p: f.to_csv(p, sep="|", decimal=",", index=False),
    "utf16.csv": lambda f, p: f.to_csv(p, sep=";", decimal=",", index=False, encoding="utf-16"),
    "utf32.csv": lambda f, p: f.to_csv(p, index=False, encoding="utf-32"),
    "cp1252.csv": lambda f, p: f.to_csv(p, sep=";", decimal=",", index=False, encoding="cp1252"),
    "parquet_named.csv": lambda f, p: f.to_parquet(p),
    "parquet_named.tsv": lambda f, p: f.to_parquet(p),
}


@pytest.mark.parametrize("name", WRITERS)
def test_numbers_are_read_as_numbers_whatever_the_layout(tmp_path: Path, name: str):
    frame = _frame()
    path = tmp_path / name
    WRITERS[name](frame, path)
    read = read_table(path)
    assert list(read.columns) == ["x1", "x2", "c", "y"]
    for col in ("x1", "x2"):
        assert pd.api.types.is_float_dtype(read[col]), read.dtypes
        np.testing.assert_allclose(read[col].to_numpy(), frame[col].to_numpy())
    assert read["c"].tolist() == frame["c"].tolist()
    assert load_dataset(str(path), "y").preprocessor.columns == ["x1", "x2", "c"]  # none left out as ID-like


def test_decimal_commas_with_missing_markers_and_mixed_decimal_marks(tmp_path: Path):
    frame = _frame()
    frame["x1"] = [f"{v:.3f}".replace(".", ",") for v in frame["x1"]]
    frame.loc[::20, "x1"] = "?"
    frame["x2"] = [f"{v:.3f}".replace(".", ",") for v in frame["x2"]]
    frame.to_csv(tmp_path / "marks.csv", sep=";", index=False)
    read = read_table(tmp_path / "marks.csv")
    assert read["x1"].dtype == np.float64 and read["x1"].isna().sum() == N // 20
    frame["x2"] = _frame()["x2"]  # decimal points in one column, commas in another: which is meant?
    frame.to_csv(tmp_path / "mixed.csv", sep=";", index=False)
    with pytest.raises(UsageError, match=r"mixes decimal commas \(in x1\) and decimal points \(in x2\)"):
        read_table(tmp_path / "mixed.csv")
    frame.to_csv(tmp_path / "comma_separated.csv", index=False)  # "1,5" quoted in a comma file: left as text
    assert read_table(tmp_path / "comma_separated.csv")["x1"].dtype != np.float64


def _duplicated(kind: str, path: Path) -> Path:
    rows = [[i, i % 2, i % 2] for i in range(60)]
    if kind == "parquet":
        pq.write_table(pa.table([pa.array(c) for c in zip(*rows)], names=["a", "y", "y"]), path.with_suffix(".parquet"))
        return path.with_suffix(".parquet")
    sep = {"csv": ",", "semicolon": ";", "tsv": "\t"}[kind]
    path = path.with_suffix(".tsv" if kind == "tsv" else ".csv")
    path.write_text("\n".join(sep.join(map(str, r)) for r in [["a", "y", "y"], *rows]) + "\n")
    return path


@pytest.mark.parametrize("kind", ["csv", "semicolon", "tsv", "parquet"])
def test_duplicate_column_names_are_refused_for_training_and_predict(tmp_path: Path, kind: str):
    path = _duplicated(kind, tmp_path / "dup")
    for read in (
        lambda: load_dataset(str(path), "y"),
        lambda: precheck_source(str(path), "y"),
        lambda: predict_file("models:/none/1", str(path), str(tmp_path / "out.csv")),
    ):
        with pytest.raises(UsageError, match=r"duplicate column names: y: rename them$"):
            read()


def test_a_column_named_like_a_pandas_duplicate_is_not_one(tmp_path: Path):
    (tmp_path / "dots.csv").write_text("a,y,y.1\n" + "".join(f"{i},{i % 2},{i}\n" for i in range(60)))
    assert list(read_table(tmp_path / "dots.csv").columns) == ["a", "y", "y.1"]


def test_whole_number_float_targets_are_classes(tmp_path: Path):
    frame = _frame()
    frame["y"] = frame["y"].astype(float)
    frame.loc[::7, "y"] = np.nan
    frame.to_csv(tmp_path / "gaps.csv", index=False)
    with_gaps = load_dataset(str(tmp_path / "gaps.csv"), "y")
    assert with_gaps.task == "classification" and with_gaps.classes == [0, 1]
    assert with_gaps.raw_all["y"].dtype == np.int64  # scored against predictions "0"/"1", not "0.0"
    frame.dropna().astype({"y": "float32"}).to_parquet(tmp_path / "f32.parquet")
    assert load_dataset(str(tmp_path / "f32.parquet"), "y").classes == [0, 1]
    frame["y"] = np.round(frame["x2"] * 1000)  # whole numbers, but many of them: a quantity
    frame.to_csv(tmp_path / "many.csv", index=False)
    assert load_dataset(str(tmp_path / "many.csv"), "y").task == "regression"
    frame["y"] = frame["x2"] + 0.5
    frame.to_csv(tmp_path / "real.csv", index=False)
    assert load_dataset(str(tmp_path / "real.csv"), "y").task == "regression"


def _refused(*args, **kwargs) -> str:
    with pytest.raises(UsageError) as info:
        load_dataset(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, message
    return message


def test_split_errors_speak_of_rows_and_name_classes(tmp_path: Path):
    frame = _frame()
    frame["d"] = pd.date_range("2020-01-01", periods=N).astype(str)
    frame["label"] = np.where(frame["x1"] > 0, "up", "down")
    frame.loc[0, "label"] = "rare"
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.head(2).to_csv(tmp_path / "two.csv", index=False)
    tiny = _refused(str(tmp_path / "two.csv"), "x1")
    assert "cannot split 2 row(s)" in tiny and "class" not in tiny
    assert "classes has fewer than 3 rows ('rare')" in _refused(str(tmp_path / "t.csv"), "label")
    for target in ("x1", "d"):
        message = _refused(str(tmp_path / "t.csv"), target, task="classification")
        assert "and 295 more" in message and "task=regression" in message


def test_file_and_column_messages(tmp_path: Path):
    _frame()[["x1"]].to_csv(tmp_path / "one.csv", index=False)
    for check in (
        lambda: load_dataset(str(tmp_path / "one.csv"), "x1"),
        lambda: precheck_source(str(tmp_path / "one.csv"), "x1"),
    ):
        with pytest.raises(UsageError, match=r"has 1 column\(s\) \(x1\): .* check the separator") as info:
            check()
        assert "rows" not in str(info.value)
    with pytest.raises(UsageError, match=r"^data is empty: pass a built-in name"):
        load_dataset("", "y")
    with pytest.raises(UsageError) as info:
        check_path("digits", ())  # predict: no built-in sets
    assert "built-in" not in str(info.value) and "()" not in str(info.value)
    (tmp_path / "bin.csv").write_bytes(b"PK\x03\x04\x00\x00binary")
    with pytest.raises(UsageError, match="is a binary file, not a CSV or Parquet table"):
        read_table(tmp_path / "bin.csv")


def test_the_encoding_warning_comes_once_per_command(tmp_path: Path, caplog, experiment, capsys):
    path = tmp_path / "latin.csv"
    _frame().to_csv(path, sep=";", decimal=",", index=False, encoding="latin-1")
    with caplog.at_level(logging.WARNING):
        precheck_source(str(path), "y")
        load_dataset(str(path), "y")
    assert sum("not UTF-8" in r.getMessage() for r in caplog.records) == 1
    code = main(["train", "data=", "target=y", f"experiment={experiment}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "data is empty" in err, err


_UNUSABLE_CELLS = {
    "list": ([1, 0], "list"),
    "array_of_floats": ([0.5, 1.5, 2.5], "list"),
    "mapping": ({"a": 1}, "dict"),
    "struct": ({"a": 1, "b": "x"}, "dict"),
    "bytes_not_utf8": (b"\x00\xff", "not UTF-8 text"),
}


@pytest.mark.parametrize("where", ["feature", "target"])
@pytest.mark.parametrize("case", sorted(_UNUSABLE_CELLS))
def test_cells_a_column_cannot_be_made_of_are_one_line(tmp_path: Path, experiment: str, capsys, case: str, where: str):
    cell, fragment = _UNUSABLE_CELLS[case]
    frame = _frame().head(60)
    frame["x2" if where == "feature" else "y"] = [cell] * len(frame)
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    column = "x2" if where == "feature" else "y"
    with pytest.raises(UsageError, match=f"column '{column}' holds .*{fragment}"):
        read_table(path)
    code = main(["train", f"data={path}", "target=y", "epochs=1", f"experiment={experiment}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and f"column '{column}'" in err, err


def test_parquet_bytes_that_are_utf8_are_read_as_text(tmp_path: Path):
    frame = _frame().head(60)
    frame["c"] = [s.encode() for s in frame["c"]]
    path = tmp_path / "b.parquet"
    pq.write_table(pa.Table.from_pandas(frame), path)
    assert list(read_table(path)["c"]) == list(_frame().head(60)["c"])
