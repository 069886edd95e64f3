"""Data files: a ``data=`` path checked (a regular, readable file of a supported type), a CSV, TSV or Parquet
file read as a frame with one-line errors, and the quick precheck of ``data=``, ``target=`` and ``task=``.

Pure pandas (no torch, no MLflow), so the command line can check a file in a fraction of a second before it
imports the heavy libraries.
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
from hyperflow.core.column_kinds import NUMERIC_TEXT_SHARE
from hyperflow.errors import UsageError, first_line

log = logging.getLogger(__name__)

TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq")
DATA_SUFFIXES = (*TABLE_SUFFIXES, ".npz")
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)  # UTF-32 first: its little-endian mark starts like UTF-16's
_NESTED_CELLS = (list, tuple, dict, set, np.ndarray)  # Parquet list, map and struct cells, as pandas reads them
_WARNED: set[Path] = set()  # files already warned about (not UTF-8): a command reads a file more than once


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
