"""Batch scoring: ``hyperflow predict model=models:/<name>@champion data=new.csv out=preds.csv`` (without ``out=``,
the scored rows as CSV on stdout)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from hyperflow.config.settings import parse_bool
from hyperflow.core.table_files import TABLE_SUFFIXES, bounded, check_path, read_table
from hyperflow.errors import UsageError, first_line, whole_message, without_credentials
from hyperflow.runtime import startup

OUT_SUFFIXES = (".csv", ".parquet")
MODEL_URIS = "pass models:/<name>@champion, models:/<name>/<version> or runs:/<run id>/model"
_CLIENTS = {
    "botocore": "boto3",
    "boto3": "boto3",
    "google": "google-cloud-storage",
    "azure": "azure-storage-blob",
}  # the module MLflow's artifact store imports -> the package to install


def check_out(out: str, data: str | None = None) -> Path:
    """The output path, refused with one line unless it names a file (of a type predict writes, not the input
    ``data``) in an existing folder this user can write (checked before scoring; no folder is created)."""
    target = Path(out)
    if target.suffix.lower() not in OUT_SUFFIXES:
        raise UsageError(f"out '{out}': predict writes .csv or .parquet: pass e.g. out=predictions.csv")
    if target.is_dir():
        raise UsageError(f"out '{out}' is a folder: pass a file name, e.g. out={target / 'predictions.csv'}")
    if target.exists() and not target.is_file():
        raise UsageError(f"out '{out}' is not a regular file (a pipe, socket or device): pass a file path")
    if data is not None and target.exists() and Path(data).exists() and os.path.samefile(target, data):
        raise UsageError(
            f"out '{out}' is the input file '{data}': writing it would replace the rows; pass another out= path"
        )
    folder = target.parent
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise UsageError(
            f"cannot write out '{out}': folder '{folder}' {what}; create the folder first or pass "
            f"out= in an existing one"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write out '{out}': folder '{folder}' is not writable; pass another out= path")
    return target


def check_model_uri(model: str) -> None:
    """Refuse a model URI MLflow cannot load a model from, before MLflow is imported: an ``http(s)://`` URI
    is read through an MLflow server's artifact API (its path holds ``/mlflow-artifacts/artifacts/``)."""
    scheme = model.split("://", 1)[0].lower() if "://" in model else ""
    if scheme in ("http", "https") and "/mlflow-artifacts/artifacts" not in model:
        raise UsageError(
            f"model '{without_credentials(model)}': an {scheme}:// model URI must name a path in an "
            f"MLflow server's artifacts ({scheme}://<host>/api/2.0/mlflow-artifacts/artifacts/<path>); "
            f"else set MLFLOW_TRACKING_URI={scheme}://<host> and {MODEL_URIS}"
        )


def predict_file(model: str, data: str, out: str | None = None, allow_missing_columns: bool | str = False) -> int:
    """Score every row of a CSV/Parquet file with a logged model; write the rows with the model's
    columns (prediction, probability_<class> …) appended to ``out``, or as CSV to stdout without one.
    Returns the number of rows scored.
    ``allow_missing_columns`` (also ``"true"``/``"false"`` from the command line) imputes absent columns.
    Refused with one line: a file with none of the model's columns, or with a column the model's output
    would overwrite."""
    allow_missing_columns = _flag(allow_missing_columns)
    target = check_out(out, data) if out is not None else None
    check_model_uri(model)
    source = check_path(data, (), formats="CSV or Parquet")
    if source.suffix.lower() not in TABLE_SUFFIXES:
        raise UsageError(f"data '{data}': predict reads .csv, .tsv or .parquet files")
    rows = read_table(source, min_columns=1)
    from hyperflow import tracking  # after the cheap checks: MLflow takes seconds to import
    from hyperflow.tracking.model import signature_columns

    try:
        loaded = tracking.load_pyfunc(model)
    except Exception as exc:  # MLflow's errors, and what a store's client or the model's code raises
        if model.startswith(("models:/", "runs:/")) and tracking.is_store_error(exc, os_errors=False):
            raise  # the tracking store failed, not the URI: the command line says so in one line
        raise UsageError(_load_error(model, exc)) from None
    expected, returned = signature_columns(loaded)
    _refuse_clashes(rows, returned, data)
    if expected and not set(expected) & set(rows.columns):
        raise UsageError(
            f"'{data}' has none of the columns of model '{model}' (it expects {bounded(expected)}): "
            f"pass a file with the columns the model was trained on"
        )
    params = {"allow_missing_columns": True} if allow_missing_columns else None
    startup.end()  # the model is loaded: scoring is the work proper (see hyperflow.runtime.startup)
    try:
        scored = loaded.predict(rows, params=params) if params else loaded.predict(rows)
    except tracking.MlflowError as exc:  # the model's own input checks (missing columns, schema)
        raise UsageError(f"cannot score '{data}' with '{model}': {first_line(exc)}") from None
    if not isinstance(scored, pd.DataFrame):
        raise UsageError(
            f"model '{model}' returns {type(scored).__name__}, not a table: predict scores table "
            f"models (classification, regression)"
        )
    _refuse_clashes(rows, scored.columns, data)
    result = pd.concat([rows.reset_index(drop=True), scored.reset_index(drop=True)], axis=1)
    if target is None:
        result.to_csv(sys.stdout, index=False)
        return len(result)
    try:
        _write_atomically(result, target)
    except OSError as exc:
        raise UsageError(f"cannot write out '{out}': {exc.strerror or exc}; pass another out= path") from None
    return len(result)


def _refuse_clashes(rows: pd.DataFrame, written: Any, data: str) -> None:
    """The output holds the input columns and the model's: never overwrite an input column."""
    clashing = [c for c in written if c in rows.columns]
    if clashing:
        raise UsageError(
            f"'{data}' already has column(s) {', '.join(clashing)}, which predict writes: rename or "
            f"drop them (e.g. pass the rows without an earlier run's predictions)"
        )


def _write_atomically(result: pd.DataFrame, target: Path) -> None:
    """Write beside the target, then rename: never a half-written file. The file gets the mode a plain
    write would give it: the replaced file's, else 0666 less the umask (mkstemp's is 0600)."""
    fd, partial = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(fd)
    try:
        os.chmod(partial, target.stat().st_mode & 0o7777 if target.is_file() else 0o666 & ~_umask())
        if target.suffix.lower() == ".parquet":
            result.to_parquet(partial, index=False)
        else:
            result.to_csv(partial, index=False)
        os.replace(partial, target)
    finally:
        Path(partial).unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it
    os.umask(mask)
    return mask


def _flag(value: bool | str) -> bool:
    if isinstance(value, str) and not value.strip():
        return False  # allow_missing_columns= left empty: the default
    try:
        return parse_bool(value)
    except ValueError:
        raise UsageError(f"allow_missing_columns={value!r} is not valid: expected true or false") from None


def _load_error(model: str, exc: Exception) -> str:
    """Why model ``model`` cannot be loaded, in one line without credentials: a store's client that is not
    installed (s3://, gs://, wasbs://) is named with the package to install."""
    shown = without_credentials(model)
    if isinstance(exc, ImportError):
        package = _CLIENTS.get((exc.name or "").split(".")[0], exc.name)
        return (
            f"cannot load model '{shown}': reading it needs the Python package {package}, which is not "
            f"installed: pip install {package}"
        )
    reason = whole_message(exc)  # a refused connection as its errno line
    reason = reason if type(exc).__module__.startswith("mlflow") else f"{type(exc).__name__}: {reason}"
    return f"cannot load model '{shown}' ({reason}): {MODEL_URIS}"
