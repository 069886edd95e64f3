"""Batch scoring: ``hyperflow predict model=models:/<name>@champion data=new.csv out=preds.csv``."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from hyperflow.errors import UsageError

_READERS = {".csv": pd.read_csv, ".tsv": lambda p: pd.read_csv(p, sep="\t"), ".parquet": pd.read_parquet,
            ".pq": pd.read_parquet}


def predict_file(model: str, data: str, out: str) -> int:
    """Score every row of a CSV/Parquet file with a logged model; write the rows with the model's
    columns (prediction, probability_<class> …) appended. Returns the number of rows scored."""
    source, target = Path(data), Path(out)
    if source.suffix.lower() not in _READERS or target.suffix.lower() not in (".csv", ".parquet"):
        raise UsageError("predict reads .csv/.tsv/.parquet and writes .csv or .parquet: check data= and out=")
    if not source.is_file():
        raise UsageError(f"data '{data}' not found: pass the CSV or Parquet file to score")
    rows = _READERS[source.suffix.lower()](source)
    try:
        loaded = mlflow.pyfunc.load_model(model)
    except (MlflowException, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot load model '{model}' ({first[:200]}): pass models:/<name>@champion, "
                         f"models:/<name>/<version> or runs:/<run id>/model") from None
    scored = loaded.predict(rows)
    if not isinstance(scored, pd.DataFrame):
        raise UsageError(f"model '{model}' returns {type(scored).__name__}, not a table: predict scores table "
                         f"models (classification, regression)")
    kept = rows.drop(columns=[c for c in scored.columns if c in rows.columns]).reset_index(drop=True)
    result = pd.concat([kept, scored.reset_index(drop=True)], axis=1)
    partial = target.with_name(f".{target.name}.partial")  # write, then rename: never a half-written file
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix.lower() == ".parquet":
        result.to_parquet(partial, index=False)
    else:
        result.to_csv(partial, index=False)
    os.replace(partial, target)
    return len(result)
