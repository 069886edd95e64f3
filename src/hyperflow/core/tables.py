"""Raw tables: reading a file, deciding what each column is, and turning raw values into numbers.

The raw-row contract: a model trained on a table accepts rows as clients really send them — ints for a
float column, floats for an int column, bools, numbers as text, ``null`` — because every value goes
through :func:`normalize_columns` both when the model is fitted and when it predicts. Column kinds:

- ``numeric``: every integer (signed, unsigned, nullable ``Int64``), float and ``bool`` column, and text
  columns whose values are nearly all numbers (e.g. ``"?"`` for missing): float64, ``inf`` treated as missing
  at predict time (and refused in training data);
- ``datetime``: datetime columns and text columns of dates: days since 1970-01-01 (UTC), a number;
- ``categorical``: strings, ``category`` and mixed object columns: one-hot encoded (at most
  ``MAX_CATEGORIES`` levels, rarer levels share one);
- dropped: ID-like text columns (almost every value distinct, e.g. names or keys): they cannot generalise,
  so they are left out with a warning and a model never asks for them.

Pure pandas/numpy (no torch, no MLflow), so the command line can check a file in a fraction of a second
before it imports the heavy libraries.
"""

from __future__ import annotations

import codecs
import csv
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hyperflow.core.arrays import check_npz
from hyperflow.core.builtins import BUILTIN_TARGET, builtin_frame
from hyperflow.errors import UsageError, first_line

log = logging.getLogger(__name__)

TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq")
DATA_SUFFIXES = (*TABLE_SUFFIXES, ".npz")
MAX_CATEGORIES = 50  # one-hot levels per column; rarer levels are pooled by OneHotEncoder
ID_MIN_DISTINCT = 50  # a text column is ID-like with at least this many distinct values ...
ID_DISTINCT_SHARE = 0.5  # ... that are more than this share of its non-missing values
NUMERIC_TEXT_SHARE = 0.95  # a text column whose values are at least this share numbers is numeric
_TRUE = {"true", "yes", "y", "t"}
_FALSE = {"false", "no", "n", "f"}
_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)  # UTF-32 first: its little-endian mark starts like UTF-16's
_NESTED_CELLS = (list, tuple, dict, set, np.ndarray)  # Parquet list, map and struct cells, as pandas reads them
_WARNED: set[Path] = set()  # files already warned about (not UTF-8): a command reads a file more than once


class MissingColumns(ValueError):
    """Rows to predict lack feature columns the model was trained on."""


# ---------------------------------------------------------------------------------------------- files


def check_path(data: str, builtins: tuple[str, ...], formats: str = "CSV, Parquet or NPZ") -> Path | None:
    """The file behind ``data`` (None for a built-in name), refused with one line unless it is a regular,
    readable file of a supported type (``formats`` names them in messages). Never opens a FIFO or a device
    (reading one would hang)."""
    if data in builtins:
        return None
    choices = (f"a built-in name ({', '.join(builtins)}) or " if builtins else "") + "the path of"
    if not str(data).strip():
        raise UsageError(f"data is empty: pass {choices} a {formats} file")
    path = Path(data)
    if not path.exists():
        raise UsageError(f"data '{data}' not found: pass {choices} an existing {formats} file")
    if path.is_dir():
        raise UsageError(f"data '{data}' is a folder: pass one {formats} file")
    if not path.is_file():
        raise UsageError(
            f"data '{data}' is not a regular file (a pipe, socket or device): save the rows to a "
            f"{formats} file and pass its path"
        )
    if path.suffix.lower() not in DATA_SUFFIXES:
        raise UsageError(f"data '{data}': unsupported file type '{path.suffix}': use .csv, .tsv, .parquet or .npz")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise UsageError(f"cannot open data '{data}': {exc.strerror or exc}") from None
    return path


def read_table(path: Path, nrows: int | None = None, min_columns: int = 2) -> pd.DataFrame:
    """A CSV (separator sniffed: , ; tab |), TSV or Parquet file (known by its content, whatever its
    suffix) as a frame; one-line errors for files that are not tables. ``nrows`` reads only the first rows
    (a quick check of the header); training data needs ``min_columns=2`` (a target and a feature), rows to
    score one."""
    with path.open("rb") as fh:
        head = fh.read(1 << 16)
    is_parquet = head.startswith(b"PAR1")
    try:
        if is_parquet:
            import pyarrow.parquet as pq

            _refuse_duplicates(path, pq.read_schema(path).names)
            frame = pd.read_parquet(path)
            frame = frame.head(nrows) if nrows else frame
        else:
            frame = _read_text_table(path, head, nrows)
    except UsageError:
        raise
    except Exception as exc:  # pandas and pyarrow raise many types: parser, encoding, empty, arrow
        raise UsageError(
            f"cannot read '{path}' as a table ({first_line(exc, 200)}): check that it is a valid "
            f"{'Parquet' if is_parquet else 'CSV'} file"
        ) from None
    frame.columns = [str(c) for c in frame.columns]
    _refuse_duplicates(path, frame.columns)
    frame = _plain_cells(frame, path)
    if frame.shape[1] < min_columns:
        needs = "a target column and at least one feature column" if min_columns > 1 else "feature columns"
        found = f" ({columns_text(frame)})" if frame.shape[1] else ""
        raise UsageError(
            f"'{path}' has {frame.shape[1]} column(s){found}: it needs a header row, {needs}; "
            f"check the separator (, ; tab |)"
        )
    if frame.empty:
        raise UsageError(f"'{path}' has a header but no rows: add at least one row")
    return frame


def _refuse_duplicates(path: Path, names: Any) -> None:
    counts = pd.Series([str(n) for n in names if str(n).strip()], dtype=object).value_counts()
    duplicated = sorted(counts.index[counts > 1])
    if duplicated:
        raise UsageError(f"'{path}' has duplicate column names: {bounded(duplicated)}: rename them")


def _plain_cells(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Cells a column can be made of: bytes become text when they are UTF-8; lists, arrays, mappings and
    nested records (Parquet's list, map and struct types) are refused with one line naming the column."""
    decoded = {}
    for name in frame.columns[frame.dtypes == "object"]:
        types = {type(v) for v in frame[name]}
        nested = sorted({"ndarray": "list"}.get(t.__name__, t.__name__) for t in types if issubclass(t, _NESTED_CELLS))
        if nested:
            raise UsageError(
                f"'{path}' column '{name}' holds {'/'.join(nested)} values (lists or nested records), "
                f"which cannot be a feature or a target: flatten them into one column per value, or "
                f"drop the column"
            )
        if any(issubclass(t, (bytes, bytearray)) for t in types):
            try:
                decoded[name] = frame[name].map(lambda v: v.decode("utf-8") if isinstance(v, (bytes, bytearray)) else v)
            except UnicodeDecodeError:
                raise UsageError(
                    f"'{path}' column '{name}' holds binary values that are not UTF-8 text: store it "
                    f"as text or numbers, or drop the column"
                ) from None
    return frame.assign(**decoded) if decoded else frame


def _read_text_table(path: Path, head: bytes, nrows: int | None) -> pd.DataFrame:
    encoding = _encoding(path, head)
    text = head.decode(encoding, errors="replace")
    if path.suffix.lower() == ".tsv":
        sep = "\t"
    else:
        try:  # the csv module's sniffer on the first lines; the fast C parser then reads the file
            sep = csv.Sniffer().sniff("\n".join(text.splitlines()[:50]), delimiters=",;\t|").delimiter
        except csv.Error:
            sep = ","
    read = dict(sep=sep, encoding=encoding, encoding_errors="replace")
    # pandas renames a repeated name (y, y.1): the header as written shows it
    _refuse_duplicates(path, pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False, **read).iloc[0])
    frame = pd.read_csv(path, nrows=nrows, **read)
    return frame if sep == "," else _decimal_commas(frame, path)


def _encoding(path: Path, head: bytes) -> str:
    """UTF-32/16 by their byte-order mark, else UTF-8, else Windows-1252 (warned once per file)."""
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding
    if b"\x00" in head:
        raise UsageError(
            f"'{path}' is a binary file, not a CSV or Parquet table: export the table as CSV (UTF-8) or Parquet"
        )
    try:
        head.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the end of the sample
            if path.resolve() not in _WARNED:
                _WARNED.add(path.resolve())
                log.warning("'%s' is not UTF-8; reading it as Windows-1252 (cp1252): save it as UTF-8 to be sure", path)
            return "cp1252"
    return "utf-8-sig"


def _decimal_commas(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Text columns of numbers with a decimal comma (``1,5``: the European convention of ``;``-separated
    files) as numbers; a file that also holds decimal points is refused as ambiguous."""
    commas = {}
    for name in frame.select_dtypes(include=["object", "string"]).columns:
        text = frame[name].dropna().astype(str).str.strip()
        numbers = pd.to_numeric(text.str.replace(",", ".", regex=False), errors="coerce")
        if text.str.contains(",", regex=False).any() and numbers.notna().mean() >= NUMERIC_TEXT_SHARE:
            commas[name] = numbers.reindex(frame.index)
    if not commas:
        return frame
    points = [c for c in frame.select_dtypes(include="floating").columns if (frame[c].dropna() % 1 != 0).any()]
    if points:
        raise UsageError(
            f"'{path}' mixes decimal commas (in {bounded(list(commas))}) and decimal points (in "
            f"{bounded(points)}): save every number with one decimal mark"
        )
    return frame.assign(**commas)


def bounded(items: list, limit: int = 5) -> str:
    """The first ``limit`` items, then how many more: a list that fits in a one-line message."""
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def columns_text(frame: pd.DataFrame, limit: int = 12) -> str:
    cols = [str(c) for c in frame.columns]
    return ", ".join(cols[:limit]) + (f" … ({len(cols)} in all)" if len(cols) > limit else "")


def check_target(frame: pd.DataFrame, target: str | None, name: str) -> None:
    if not target:
        raise UsageError(f"data '{name}' needs target=<column>: its columns are {columns_text(frame)}")
    if target not in frame.columns:
        raise UsageError(f"target column '{target}' is not in {name}: its columns are {columns_text(frame)}")


def check_task(y: pd.Series | None, task: str | None, target: str, name: str) -> None:
    """Refuse a ``task=`` that a table's target column ``y`` cannot have: segmentation (it needs images and
    masks), regression of a column that holds no numbers (not checked without ``y``)."""
    if task == "segmentation":
        raise UsageError(
            f"task=segmentation needs images and masks (an .npz with X and y), but {name} is a table: "
            f"use task=classification or regression"
        )
    if (
        task == "regression"
        and y is not None
        and (pd.api.types.is_bool_dtype(y) or not pd.api.types.is_numeric_dtype(y))
    ):
        raise UsageError(
            f"task=regression needs a numeric target, but '{target}' holds {y.dtype} values: use task=classification"
        )


def precheck(data: str, target: str | None, builtins: tuple[str, ...], task: str | None = None) -> None:
    """The quick checks of ``data=``, ``target=`` and ``task=`` (file, type, header, the target column, the
    task its first rows allow; an ``.npz``'s arrays for ``task``) that need neither torch nor MLflow, so that a
    mistake is reported in a fraction of a second."""
    path = check_path(data, builtins)
    if path is None and target not in (None, BUILTIN_TARGET if data != "shapes" else None):
        raise UsageError(
            f"data '{data}' is built in and brings its own target: drop target={target} (it names "
            f"a column of your own file: data=<file.csv> target={target})"
        )
    if path is None and task is not None:
        if data == "shapes" and task != "segmentation":
            raise UsageError(
                f"task={task} needs one label per sample, but shapes holds images and masks: use "
                f"task=segmentation (or leave task out)"
            )
        if data != "shapes":  # a table: its labels are read (scikit-learn) only to check a regression
            y = builtin_frame(data)[0][BUILTIN_TARGET] if task == "regression" else None
            check_task(y, task, BUILTIN_TARGET, data)
    if path is not None and path.suffix.lower() == ".npz":
        check_npz(path, task)  # the arrays' shapes and types, from their headers
    if path is None or path.suffix.lower() == ".npz":
        return
    sample = read_table(path, nrows=50)  # a column with text in these rows holds text in all of them
    check_target(sample, target, str(data))
    check_task(sample[target], task, target, str(data))


# ---------------------------------------------------------------------------------------------- columns


def _plain_numbers(frame: pd.DataFrame, names: Any) -> list[str]:
    """The columns of ``names`` held as numpy bool, int or float (not pandas' nullable types): converted in one
    pass over all of them, which keeps a table of thousands of columns fast (a pass per column takes minutes)."""
    dtypes = dict(zip(frame.columns, frame.dtypes))
    return [n for n in names if isinstance(dtypes[n], np.dtype) and dtypes[n].kind in "biuf"]


def column_kinds(features: pd.DataFrame) -> dict[str, str]:
    """``numeric``, ``datetime``, ``categorical`` or ``id`` (to drop) for every feature column."""
    plain = set(_plain_numbers(features, features.columns))
    kinds = {}
    for name in features.columns:
        if name in plain:
            kinds[name] = "numeric"
            continue
        col = features[name]
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            kinds[name] = "numeric"
        elif pd.api.types.is_datetime64_any_dtype(col):
            kinds[name] = "datetime"
        elif isinstance(col.dtype, pd.CategoricalDtype):
            kinds[name] = "categorical"
        else:
            kinds[name] = _text_kind(col)
    return kinds


def _text_kind(col: pd.Series) -> str:
    values = col.dropna()
    if values.empty:
        return "numeric"  # nothing to learn from; imputed as a constant
    if values.map(lambda v: isinstance(v, (bool, np.bool_))).all():
        return "numeric"
    text = values.astype(str).str.strip()
    if pd.to_numeric(text, errors="coerce").notna().mean() >= NUMERIC_TEXT_SHARE:
        return "numeric"
    if text.str.lower().isin(_TRUE | _FALSE).all():
        return "numeric"
    sample = text.head(200)
    if sample.str.contains(r"\d", regex=True).all() and _to_datetime(sample).notna().mean() >= NUMERIC_TEXT_SHARE:
        return "datetime"
    distinct = text.nunique()
    if distinct >= ID_MIN_DISTINCT and distinct > ID_DISTINCT_SHARE * len(text):
        return "id"
    return "categorical"


def _to_datetime(col: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(col):
        out = col
        if getattr(col.dt, "tz", None) is None:
            out = col.dt.tz_localize("UTC")
        return out.dt.tz_convert("UTC")
    return pd.to_datetime(col.astype(object).where(col.notna(), None), errors="coerce", utc=True, format="mixed")


def _cell_number(value: Any) -> float:
    """One raw value as a float: numbers, bools, numbers and true/false as text; anything else is missing."""
    if value is None or value is pd.NA or value is pd.NaT:
        return np.nan
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return 1.0
    if text in _FALSE:
        return 0.0
    try:
        return float(text)
    except ValueError:
        return np.nan


def to_numbers(col: pd.Series) -> np.ndarray:
    """A numeric column of any dtype (nullable, bool, object) as float64, missing as NaN."""
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
        return col.astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    return np.fromiter((_cell_number(v) for v in col), dtype=np.float64, count=len(col))


def _category(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return np.nan
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))  # 3.0 sent for the level "3"
    return str(value)


def normalize_columns(frame: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """One dtype per column, the same when fitting and when serving: categoricals as strings (NaN for
    missing), numbers and datetimes as float64 with non-finite values as missing."""
    plain = _plain_numbers(frame, [n for n, k in kinds.items() if k == "numeric"])
    done = set(plain)
    out = {}
    for name, kind in kinds.items():
        if name in done:
            continue
        col = frame[name]
        if kind == "categorical":
            out[name] = pd.Series([_category(v) for v in col], index=frame.index, dtype=object)
            continue
        if kind == "datetime":
            stamps = _to_datetime(col)
            values = ((stamps - _EPOCH) / pd.Timedelta(days=1)).to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            values = to_numbers(col)
        values = np.where(np.isfinite(values), values, np.nan)
        out[name] = pd.Series(values, index=frame.index)
    if not plain:
        return pd.DataFrame(out, index=frame.index)
    block = frame[plain].to_numpy(dtype=np.float64)
    numbers = pd.DataFrame(np.where(np.isfinite(block), block, np.nan), index=frame.index, columns=plain)
    return pd.concat([numbers, pd.DataFrame(out, index=frame.index)], axis=1)[list(kinds)]


def nonfinite_columns(features: pd.DataFrame, kinds: dict[str, str]) -> dict[str, int]:
    """Numeric columns holding inf/-inf (or text such as 'inf'), with how many rows do."""
    plain = _plain_numbers(features, [n for n, k in kinds.items() if k == "numeric"])
    counts = np.isinf(features[plain].to_numpy(dtype=np.float64)).sum(axis=0) if plain else []
    found = {name: int(n) for name, n in zip(plain, counts) if n}
    done = set(plain)
    for name, kind in kinds.items():
        if kind == "numeric" and name not in done:
            values = to_numbers(features[name])
            count = int(np.isinf(values).sum())
            if count:
                found[name] = count
    return found


def select_columns(raw: Any, columns: list[str], allow_missing: bool) -> pd.DataFrame:
    """The model's feature columns of raw input rows, in training order; extra columns are ignored.
    Columns the rows lack raise :class:`MissingColumns` naming them, unless ``allow_missing`` (then they
    are imputed like missing values)."""
    frame = raw if isinstance(raw, pd.DataFrame) else pd.DataFrame(raw)
    if not all(isinstance(c, str) for c in frame.columns):
        frame = frame.rename(columns=str)
    missing = [c for c in columns if c not in frame.columns]
    if missing and not allow_missing:
        shown = ", ".join(missing[:20]) + (f" … ({len(missing)} in all)" if len(missing) > 20 else "")
        what = "none of the model's feature columns" if len(missing) == len(columns) else "missing feature columns"
        raise MissingColumns(
            f"the input has {what}: {shown}. Send every column the model was trained on "
            f"(extra columns are ignored), or set allow_missing_columns=true to impute them"
        )
    return frame.reindex(columns=columns)
