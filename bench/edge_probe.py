"""Adversarial probe of hyperflow's edges (issue 23): bad inputs, store faults, concurrent commands.

    python bench/edge_probe.py [--jobs 2] [--only SUBSTR ...] [--keep] [--out bench/results/edge_probe]

(230 probes, about 35 min on a loaded 2-core machine; Dec 2026: 230 of 230 ok.)

Each probe runs `python -m hyperflow ...` in a fresh temporary folder with its own sqlite store
(MLFLOW_TRACKING_URI=sqlite:///<tmp>/mlflow.db unless the probe is about the URI), 120 s at most, and is
classified: exit code, non-empty stderr lines, 'Traceback' in the output, runs left RUNNING, runs created,
registry changed, seconds. Expectation: exit code in the probe's set; when the exit code is not 0 one
line on stderr, no traceback, no RUNNING run, no registry change; on exit 2 no run left behind.
Writes results.json and table.md into --out.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gzip
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PY = sys.executable
TIMEOUT = 120.0
ROOT = Path(os.environ.get("PROBE_TMP", "/tmp/hfprobe"))
SECRET = "S3cretPW"


# ----------------------------------------------------------------------------------------------- helpers
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hf(ctx: dict, *args: str, env: dict | None = None, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """A setup step: a hyperflow command that must succeed."""
    proc = subprocess.run(
        [PY, "-m", "hyperflow", *args],
        cwd=ctx["tmp"],
        env={**ctx["env"], **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"setup `hyperflow {' '.join(args)}` exited {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"
        )
    return proc


def table(n: int = 60, classes: int = 3, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(4)})
    df["y"] = rng.integers(0, classes, size=n)
    return df


def write_csv(ctx: dict, name: str, df: pd.DataFrame, **kw: Any) -> Path:
    path = Path(ctx["tmp"]) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False, **kw)
    return path


def write(ctx: dict, name: str, text: str | bytes) -> Path:
    path = Path(ctx["tmp"]) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def model(ctx: dict, champion: bool = False, name: str = "m") -> None:
    """A registered model trained on a generated CSV (t.csv, target y), version 1; champion if asked."""
    write_csv(ctx, "t.csv", table(90))
    hf(ctx, "train", "data=t.csv", "target=y", "epochs=1", f"model_name={name}")
    if champion:
        hf(ctx, "promote", f"model_name={name}", "version=1", "allow_first=true")


def model_wine(ctx: dict, champion: bool = True) -> None:
    hf(ctx, "train", "data=wine", "epochs=1", "model_name=m")
    if champion:
        hf(ctx, "promote", "model_name=m", "version=1", "allow_first=true")


def db_query(db: Path, sql: str, args: tuple = ()) -> list[tuple] | None:
    if not db.is_file():
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return None


def snapshot(db: Path) -> dict:
    runs = db_query(db, "select run_uuid, status, name from runs")
    reg: dict[str, Any] = {}
    for t, cols in [
        ("registered_models", "name, description"),
        ("model_versions", "name, version, description, status"),
        ("registered_model_aliases", "name, alias, version"),
        ("model_version_tags", "name, version, key, value"),
        ("registered_model_tags", "name, key, value"),
    ]:
        rows = db_query(db, f"select {cols} from {t}")
        if rows is not None and t == "registered_model_tags":
            rows = [r for r in rows if r[1] != "hyperflow.retrain_lock"]
        reg[t] = sorted(map(repr, rows)) if rows is not None else None
    return {"runs": runs, "registry": reg}


def search_id(ctx: dict) -> str:
    rows = db_query(Path(ctx["db"]), "select run_uuid from tags where key='hyperflow.role' and value='search'")
    if not rows:
        raise RuntimeError("no search run in the store")
    return rows[0][0]


def trial_numbers(ctx: dict) -> list[str]:
    """Trial numbers of the trial runs not ended KILLED (a killed trial runs again under its number)."""
    rows = (
        db_query(
            Path(ctx["db"]),
            "select t.value from tags t join runs r on r.run_uuid=t.run_uuid "
            "where t.key='hyperflow.trial_number' and r.status != 'KILLED'",
        )
        or []
    )
    return [r[0] for r in rows]


def chattr(path: Path, flag: str) -> None:
    subprocess.run(["chattr", flag, str(path)], check=True, capture_output=True)


# ------------------------------------------------------------------------------------------------ probes
@dataclass
class Probe:
    name: str
    family: str
    args: list[str] | list[list[str]]  # one command, or several run at once (concurrent=True)
    expect: set[int] = field(default_factory=lambda: {2})
    setup: Callable[[dict], None] | None = None
    env: dict[str, str] = field(default_factory=dict)
    concurrent: bool = False
    signal_after: tuple[str, int] | None = None  # ("running"|seconds, signal): signal once a run is RUNNING
    check: Callable[[dict, list[dict]], list[str]] | None = None
    max_lines: int = 1
    cleanup: Callable[[dict], None] | None = None
    no_run_on_2: bool = True


PROBES: list[Probe] = []


def P(name: str, family: str, args: str | list, **kw: Any) -> None:
    if isinstance(args, str):
        args = args.split()
    PROBES.append(Probe(name, family, args, **kw))


def files(**kw: Callable[[dict], Any]) -> Callable[[dict], None]:
    def run(ctx: dict) -> None:
        for fn in kw.values():
            fn(ctx)

    return run


# ---- data files (train unless said) --------------------------------------------------------------------
def _bom(ctx):
    write(ctx, "bom.csv", "\ufeff" + table().to_csv(index=False))


P("csv_utf8_bom", "data", "train data=bom.csv target=x0 epochs=1", expect={0}, setup=_bom)
P(
    "csv_bom_target_first_col",
    "data",
    "train data=bom1.csv target=y epochs=1",
    expect={0},
    setup=lambda c: write(c, "bom1.csv", "\ufeff" + table()[["y", "x0", "x1"]].to_csv(index=False)),
)
P(
    "csv_semicolon_decimal_comma",
    "data",
    "train data=semi.csv target=y epochs=1",
    expect={0},
    setup=lambda c: write_csv(c, "semi.csv", table(), sep=";", decimal=","),
)
P("csv_header_only", "data", "train data=h.csv target=y epochs=1", setup=lambda c: write(c, "h.csv", "x0,x1,y\n"))
P(
    "csv_one_row",
    "data",
    "train data=one.csv target=y epochs=1",
    setup=lambda c: write(c, "one.csv", "x0,x1,y\n1.0,2.0,1\n"),
)
P(
    "csv_two_rows",
    "data",
    "train data=two.csv target=y epochs=1",
    setup=lambda c: write(c, "two.csv", "x0,x1,y\n1.0,2.0,1\n3.0,1.0,0\n"),
)
P(
    "csv_one_class",
    "data",
    "train data=oc.csv target=y task=classification epochs=1",
    setup=lambda c: write_csv(c, "oc.csv", table().assign(y=1)),
)
P(
    "csv_target_all_nan",
    "data",
    "train data=nan.csv target=y epochs=1",
    setup=lambda c: write_csv(c, "nan.csv", table().assign(y=np.nan)),
)
P(
    "csv_bool_target",
    "data",
    "train data=b.csv target=y epochs=1",
    expect={0},
    setup=lambda c: write_csv(c, "b.csv", table().assign(y=lambda d: d.x0 > 0)),
)
P(
    "csv_datetime_target",
    "data",
    "train data=dt.csv target=y epochs=1",
    expect={0, 2},
    setup=lambda c: write_csv(c, "dt.csv", table().assign(y=pd.date_range("2024-01-01", periods=60, freq="D"))),
)
P(
    "csv_1e308_feature",
    "data",
    "train data=big.csv target=y epochs=1",
    setup=lambda c: write_csv(c, "big.csv", table().assign(x0=lambda d: d.x0 * 1e308)),
)
P(
    "csv_1e308_regression_target",
    "data",
    "train data=bt.csv target=y task=regression epochs=1",
    setup=lambda c: write_csv(c, "bt.csv", table().assign(y=lambda d: d.x0 * 1e308)),
)
P(
    "csv_inf_target",
    "data",
    "train data=it.csv target=y task=regression epochs=1",
    setup=lambda c: write_csv(c, "it.csv", table().assign(y=lambda d: np.where(d.x0 > 1, np.inf, d.x1))),
)
P(
    "csv_gzipped",
    "data",
    "train data=g.csv.gz target=y epochs=1",
    expect={0, 2},
    setup=lambda c: write(c, "g.csv.gz", gzip.compress(table().to_csv(index=False).encode())),
)
P(
    "csv_gzip_named_csv",
    "data",
    "train data=gz.csv target=y epochs=1",
    expect={0, 2},
    setup=lambda c: write(c, "gz.csv", gzip.compress(table().to_csv(index=False).encode())),
)
P(
    "excel_xlsx_fake",
    "data",
    "train data=x.xlsx target=y epochs=1",
    setup=lambda c: write(c, "x.xlsx", b"PK\x03\x04" + os.urandom(2000)),
)
P("data_is_directory", "data", "train data=d target=y epochs=1", setup=lambda c: (Path(c["tmp"]) / "d").mkdir())
P("data_dev_null", "data", "train data=/dev/null target=y epochs=1")
P("data_fifo", "data", "train data=f.csv target=y epochs=1", setup=lambda c: os.mkfifo(Path(c["tmp"]) / "f.csv"))
P("data_zero_bytes", "data", "train data=z.csv target=y epochs=1", setup=lambda c: write(c, "z.csv", ""))
P(
    "data_symlink_loop",
    "data",
    "train data=loop.csv target=y epochs=1",
    setup=lambda c: (
        os.symlink("loop2.csv", Path(c["tmp"]) / "loop.csv"),
        os.symlink("loop.csv", Path(c["tmp"]) / "loop2.csv"),
    ),
)
P(
    "csv_unicode_columns",
    "data",
    ["train", "data=u.csv", "target=ζ-ziel ✓", "epochs=1"],
    expect={0},
    setup=lambda c: write_csv(c, "u.csv", table().rename(columns={"x0": "größe", "x1": "日本", "y": "ζ-ziel ✓"})),
)
P(
    "csv_duplicate_columns",
    "data",
    "train data=dup.csv target=y epochs=1",
    setup=lambda c: write(c, "dup.csv", "a,a,y\n" + "".join(f"{i},{i * 2},{i % 2}\n" for i in range(40))),
)
P(
    "csv_duplicate_target_column",
    "data",
    "train data=dupy.csv target=y epochs=1",
    setup=lambda c: write(c, "dupy.csv", "a,y,y\n" + "".join(f"{i},{i % 2},{i % 3}\n" for i in range(40))),
)
P(
    "target_equals_split_column",
    "data",
    "train data=t.csv target=y split_column=y epochs=1",
    setup=lambda c: write_csv(c, "t.csv", table()),
)
P(
    "split_column_bad_values",
    "data",
    "train data=s.csv target=y split_column=s epochs=1",
    setup=lambda c: write_csv(c, "s.csv", table().assign(s="banana")),
)
P(
    "split_column_no_test_rows",
    "data",
    "train data=s.csv target=y split_column=s epochs=1",
    setup=lambda c: write_csv(c, "s.csv", table().assign(s=["train", "val"] * 30)),
)
P(
    "csv_only_target_column",
    "data",
    "train data=o.csv target=y epochs=1",
    setup=lambda c: write_csv(c, "o.csv", table()[["y"]]),
)
P(
    "csv_ragged_rows",
    "data",
    "train data=r.csv target=y epochs=1",
    expect={0, 2},
    setup=lambda c: write(c, "r.csv", "x0,x1,y\n" + "".join(f"{i},{i},{i % 2}\n" for i in range(40)) + "1,2,3,4,5\n"),
)
P(
    "csv_empty_column_name",
    "data",
    "train data=e.csv target=y epochs=1",
    expect={0},
    setup=lambda c: write(c, "e.csv", ",x1,y\n" + "".join(f"{i},{i * 0.5},{i % 2}\n" for i in range(40))),
)
P(
    "parquet_list_column",
    "data",
    "train data=l.parquet target=y epochs=1",
    expect={0, 2},
    setup=lambda c: table().assign(x0=lambda d: [[1, 2]] * len(d)).to_parquet(Path(c["tmp"]) / "l.parquet"),
)
P(
    "parquet_struct_column",
    "data",
    "train data=s.parquet target=y epochs=1",
    expect={0, 2},
    setup=lambda c: table().assign(x0=lambda d: [{"a": 1, "b": "x"}] * len(d)).to_parquet(Path(c["tmp"]) / "s.parquet"),
)
P(
    "parquet_list_target",
    "data",
    "train data=lt.parquet target=y epochs=1",
    setup=lambda c: table().assign(y=lambda d: [[1, 0]] * len(d)).to_parquet(Path(c["tmp"]) / "lt.parquet"),
)
P(
    "parquet_truncated",
    "data",
    "train data=tr.parquet target=y epochs=1",
    setup=lambda c: (
        table().to_parquet(Path(c["tmp"]) / "full.parquet"),
        write(c, "tr.parquet", (Path(c["tmp"]) / "full.parquet").read_bytes()[:300]),
    ),
)
P(
    "parquet_bytes_column",
    "data",
    "train data=bc.parquet target=y epochs=1",
    expect={0, 2},
    setup=lambda c: table().assign(x0=lambda d: [b"\x00\xff"] * len(d)).to_parquet(Path(c["tmp"]) / "bc.parquet"),
)
P(
    "npz_missing_y",
    "data",
    "train data=a.npz epochs=1",
    setup=lambda c: np.savez(Path(c["tmp"]) / "a.npz", X=np.zeros((20, 3))),
)
P(
    "npz_1d_X",
    "data",
    "train data=a.npz epochs=1",
    setup=lambda c: np.savez(Path(c["tmp"]) / "a.npz", X=np.zeros(20), y=np.zeros(20)),
)
P(
    "npz_object_pickle",
    "data",
    "train data=a.npz epochs=1",
    setup=lambda c: np.savez(Path(c["tmp"]) / "a.npz", X=np.array([{"a": 1}] * 20, dtype=object), y=np.zeros(20)),
)
P(
    "npz_X_y_length_mismatch",
    "data",
    "train data=a.npz epochs=1",
    setup=lambda c: np.savez(Path(c["tmp"]) / "a.npz", X=np.zeros((20, 3)), y=np.zeros(15)),
)
P(
    "npz_nonbinary_mask",
    "data",
    "train data=a.npz model=unet epochs=1",
    setup=lambda c: np.savez(
        Path(c["tmp"]) / "a.npz", X=np.random.rand(30, 1, 16, 16), y=np.random.randint(0, 5, (30, 1, 16, 16))
    ),
)
P(
    "npz_nan_in_X",
    "data",
    "train data=a.npz epochs=1",
    expect={0, 2},
    setup=lambda c: np.savez(Path(c["tmp"]) / "a.npz", X=np.full((40, 3), np.nan), y=np.arange(40) % 2),
)
P(
    "csv_mixed_type_target",
    "data",
    "train data=mx.csv target=y epochs=1",
    expect={0},
    setup=lambda c: write_csv(c, "mx.csv", table().assign(y=["a", 1, 2.5] * 20)),
)

# ---- settings ----------------------------------------------------------------------------------------
for _name, _arg in [
    ("epochs_negative", "epochs=-1"),
    ("epochs_nan", "epochs=nan"),
    ("epochs_empty", "epochs="),
    ("epochs_list", "epochs=[1,2]"),
    ("epochs_huge", "epochs=1e30"),
    ("lr_inf", "lr=inf"),
    ("lr_nan", "lr=nan"),
    ("lr_negative", "lr=-0.1"),
    ("batch_size_zero", "batch_size=0"),
    ("val_size_1_5", "val_size=1.5"),
    ("val_plus_test_1", "val_size=0.5 test_size=0.5"),
    ("dropout_one", "dropout=1"),
    ("momentum_negative", "optimizer=sgd momentum=-1"),
    ("width_1e30", "width=1e30"),
    ("threads_negative", "threads=-5"),
    ("device_cuda_99", "device=cuda:99"),
    ("device_tpu", "device=tpu"),
    ("grad_clip_negative", "grad_clip=-1"),
    ("flush_secs_nan", "flush_secs=nan"),
    ("pct_start_zero", "pct_start=0"),
    ("cycle_epochs_zero", "schedule=cyclic cycle_epochs=0"),
    ("beta2_one", "beta2=1"),
    ("div_factor_zero", "div_factor=0"),
    ("label_smoothing_2", "label_smoothing=2"),
    ("patience_inf", "patience=inf"),
    ("experiment_empty", "experiment="),
    ("model_name_1000_chars", "model_name=" + "m" * 1000),
    ("model_kwargs_for_mlp", "model_kwargs={a:1}"),
    ("model_not_importable", "model=nopkg.mod:f"),
    ("model_factory_returns_none", "model=builtins:print"),
    ("loss_dice_for_classes", "loss=dice"),
    ("task_segmentation_for_table", "task=segmentation"),
    ("bool_yes_please", "restore_best=maybe"),
    ("seed_float", "seed=1.5"),
]:
    P(f"train_{_name}", "settings", f"train data=wine epochs=1 {_arg}".split())
for _key in [
    "min_delta",
    "grad_clip",
    "weight_decay",
    "min_lr",
    "warmup_epochs",
    "cycle_gamma",
    "final_div_factor",
    "label_smoothing",
    "dropout",
    "momentum",
    "beta1",
    "max_lr",
    "start_lr",
    "pct_start",
    "val_size",
]:
    P(f"train_{_key}_nan", "settings", f"train data=wine epochs=1 {_key}=nan".split())
for _key in ["timeout", "min_epochs", "prune_patience", "early_stop"]:
    P(f"search_{_key}_nan", "settings", f"search data=wine epochs=1 max_evals=2 {_key}=nan".split())
P("train_run_name_5000_chars", "settings", ["train", "data=wine", "epochs=1", "run_name=" + "r" * 5000], expect={0, 2})
P("train_key_without_value", "settings", "train data=wine epochs")
P("train_dashdash_key_value", "settings", "train data=wine --epochs 1", expect={0})  # `--key value` is accepted
P("lrfind_start_gt_end", "settings", "lr-find data=wine start_lr=1 end_lr=1e-5")
P("lrfind_num_iter_zero", "settings", "lr-find data=wine num_iter=0")
P("lrfind_repeats_zero", "settings", "lr-find data=wine repeats=0")
P("lrfind_start_lr_zero_exp", "settings", "lr-find data=wine start_lr=0")
for _name, _arg in [
    ("max_evals_zero", "max_evals=0"),
    ("timeout_negative", "timeout=-1"),
    ("parallelism_zero", "parallelism=0"),
    ("parallelism_negative", "parallelism=-2"),
    ("gamma_nan", "gamma=nan"),
    ("gamma_zero", "gamma=0"),
    ("n_startup_negative", "n_startup_jobs=-1"),
    ("loss_threshold_nan", "loss_threshold=nan"),
    ("resume_empty", "resume="),
    ("reduction_factor_one", "pruner=asha reduction_factor=1"),
    ("strategy_bogus", "strategy=anneal"),
]:
    P(f"search_{_name}", "settings", f"search data=wine epochs=1 max_evals=2 {_arg}".split())
P(
    "search_resume_of_train_run",
    "settings",
    "search data=wine resume={train_run}",
    setup=lambda c: (
        hf(c, "train", "data=wine", "epochs=1"),
        c.update(train_run=db_query(Path(c["db"]), "select run_uuid from runs")[0][0]),
    ),
)

# ---- config files ------------------------------------------------------------------------------------
P("config_yaml_list", "config", "train config=c.yaml", setup=lambda c: write(c, "c.yaml", "- epochs: 1\n- lr: 0.1\n"))
P("config_yaml_tabs", "config", "train config=c.yaml", setup=lambda c: write(c, "c.yaml", "data: wine\n\tepochs: 1\n"))
P("config_missing", "config", "train config=nope.yaml")
P("config_is_directory", "config", "train config=cd", setup=lambda c: (Path(c["tmp"]) / "cd").mkdir())
P("config_binary", "config", "train config=c.yaml", setup=lambda c: write(c, "c.yaml", bytes(range(256)) * 8))
P(
    "config_self_reference",
    "config",
    "train config=c.yaml",
    setup=lambda c: write(c, "c.yaml", "config: c.yaml\nepochs: 1\n"),
)
P(
    "config_python_object_tag",
    "config",
    "train config=c.yaml",
    setup=lambda c: write(c, "c.yaml", "epochs: !!python/object/apply:os.system ['touch pwned']\n"),
    check=lambda c, r: ["YAML python tag executed"] if (Path(c["tmp"]) / "pwned").exists() else [],
)
P(
    "config_billion_laughs",
    "config",
    "train config=c.yaml",
    setup=lambda c: write(
        c,
        "c.yaml",
        "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
        "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
        "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
        "model_kwargs: {g: [*f,*f,*f,*f,*f,*f,*f,*f,*f]}\n",
    ),
)
P("config_scalar", "config", "search config=c.yaml", setup=lambda c: write(c, "c.yaml", "42\n"))
P("config_dev_null", "config", "train data=wine epochs=1 config=/dev/null", expect={0, 2})

# ---- space files -------------------------------------------------------------------------------------
_SPACES = {
    "empty": "",
    "list": "- lr\n- width\n",
    "low_gt_high": "lr: {type: uniform, low: 0.1, high: 0.01}\n",
    "loguniform_low_zero": "lr: {type: loguniform, low: 0, high: 0.1}\n",
    "choice_no_values": "width: {type: choice, values: []}\n",
    "choice_no_options": "optimizer: {type: choice, options: {}}\n",
    "unknown_distribution": "lr: {type: gaussian, mu: 0.01, sigma: 0.001}\n",
    "nested_dims": "lr: {lr: {type: uniform, low: 0.001, high: 0.01}}\n",
    "string_bounds": "lr: {type: uniform, low: abc, high: def}\n",
    "int_fractional_bounds": "depth: {type: int, low: 1.5, high: 2.5}\n",
    "quniform_q_zero": "width: {type: quniform, low: 16, high: 64, q: 0}\n",
    "fixed_epochs_negative": "epochs: -5\n",
    "missing_type": "lr: {low: 0.001, high: 0.01}\n",
    "nan_bound": "lr: {type: uniform, low: .nan, high: 0.1}\n",
    "inf_bound": "lr: {type: loguniform, low: 1e-5, high: .inf}\n",
    "width_choice_huge": "width: {type: choice, values: [1000000000]}\n",
}
for _name, _text in _SPACES.items():
    P(
        f"space_{_name}",
        "space",
        "search data=wine epochs=1 max_evals=2 space=s.yaml",
        setup=(lambda t: lambda c: write(c, "s.yaml", t))(_text),
    )
P("space_missing_file", "space", "search data=wine max_evals=2 space=nope.yaml")
P(
    "space_is_directory",
    "space",
    "search data=wine max_evals=2 space=sd",
    setup=lambda c: (Path(c["tmp"]) / "sd").mkdir(),
)

# ---- promote / retrain / predict inputs ----------------------------------------------------------------
P("promote_unknown_model", "promote", "promote model_name=nope allow_first=true")
P("promote_version_word", "promote", "promote model_name=m version=abc allow_first=true", setup=model)
P("promote_version_negative", "promote", "promote model_name=m version=-1 allow_first=true", setup=model)
P("promote_version_fraction", "promote", "promote model_name=m version=1.5 allow_first=true", setup=model)
P("promote_version_999", "promote", "promote model_name=m version=999 allow_first=true", setup=model)
P("promote_no_challenger_alias", "promote", "promote model_name=m allow_first=true", setup=model)
P(
    "promote_gate_empty_file",
    "promote",
    "promote model_name=m version=1 gate=g.yaml",
    setup=lambda c: (model(c), write(c, "g.yaml", "")),
)
P(
    "promote_gate_unknown_metric",
    "promote",
    ["promote", "model_name=m", "version=1", "gate={bleu: {threshold: 0.5}}"],
    setup=model,
)
P(
    "promote_gate_string_threshold",
    "promote",
    ["promote", "model_name=m", "version=1", "gate={accuracy: {threshold: high}}"],
    setup=model,
)
P(
    "promote_gate_yaml_list",
    "promote",
    "promote model_name=m version=1 gate=g.yaml",
    setup=lambda c: (model(c), write(c, "g.yaml", "- accuracy\n- f1\n")),
)
P("promote_gate_rmse_on_classifier", "promote", "promote model_name=m version=1 gate.rmse.threshold=0.5", setup=model)
P("promote_gate_nan_threshold", "promote", "promote model_name=m version=1 gate.accuracy.threshold=nan", setup=model)
P(
    "promote_data_without_target",
    "promote",
    "promote model_name=m version=1 allow_first=true data=nt.csv",
    setup=lambda c: (model(c), write_csv(c, "nt.csv", table().drop(columns="y"))),
)
P(
    "promote_data_other_columns",
    "promote",
    "promote model_name=m version=1 allow_first=true data=oc.csv",
    setup=lambda c: (model(c), write_csv(c, "oc.csv", table().rename(columns={"x0": "q0", "x1": "q1"}))),
)
P(
    "promote_data_header_only",
    "promote",
    "promote model_name=m version=1 allow_first=true data=h.csv",
    setup=lambda c: (model(c), write(c, "h.csv", "x0,x1,x2,x3,y\n")),
)
P("promote_max_attempts_zero", "promote", "promote model_name=m version=1 allow_first=true max_attempts=0", setup=model)
P("promote_model_name_empty", "promote", "promote model_name=")
P("retrain_unknown_model", "retrain", "retrain model_name=nope")
P("retrain_no_champion", "retrain", "retrain model_name=m epochs=1", setup=model)
P("retrain_lease_zero", "retrain", "retrain model_name=m lease=0 epochs=1", setup=lambda c: model(c, True))
P("retrain_lease_nan", "retrain", "retrain model_name=m lease=nan epochs=1", setup=lambda c: model(c, True))
P(
    "retrain_empty_folder",
    "retrain",
    "retrain model_name=m data=inbox epochs=1",
    setup=lambda c: (model(c, True), (Path(c["tmp"]) / "inbox").mkdir()),
)
P(
    "retrain_glob_no_match",
    "retrain",
    ["retrain", "model_name=m", "data=inbox/*.parquet", "epochs=1"],
    setup=lambda c: (model(c, True), (Path(c["tmp"]) / "inbox").mkdir()),
)
P(
    "retrain_folder_only_hidden",
    "retrain",
    "retrain model_name=m data=inbox epochs=1",
    setup=lambda c: (model(c, True), write_csv(c, "inbox/.part.csv", table(90))),
)
P("retrain_mode_bogus", "retrain", "retrain model_name=m mode=bogus", setup=lambda c: model(c, True))
P(
    "retrain_search_max_evals_zero",
    "retrain",
    "retrain model_name=m mode=search max_evals=0",
    setup=lambda c: model(c, True),
)
P(
    "retrain_newest_file_corrupt",
    "retrain",
    "retrain model_name=m data=inbox epochs=1",
    setup=lambda c: (
        model(c, True),
        write_csv(c, "inbox/a.csv", table(90)),
        time.sleep(0.05),
        write(c, "inbox/b.csv", bytes(range(256)) * 8),
    ),
)
P(
    "retrain_target_removed",
    "retrain",
    "retrain model_name=m data=nt.csv epochs=1",
    setup=lambda c: (model(c, True), write_csv(c, "nt.csv", table(90).drop(columns="y"))),
)
P(
    "predict_unknown_model",
    "predict",
    "predict model=models:/nope/1 data=t.csv out=p.csv",
    setup=lambda c: write_csv(c, "t.csv", table()),
)
P("predict_no_model_arg", "predict", "predict data=t.csv out=p.csv", setup=lambda c: write_csv(c, "t.csv", table()))
P("predict_data_missing", "predict", "predict model=models:/m/1 data=nope.csv out=p.csv", setup=model)
P("predict_data_dev_null", "predict", "predict model=models:/m/1 data=/dev/null out=p.csv", setup=model)
P(
    "predict_data_fifo",
    "predict",
    "predict model=models:/m/1 data=f.csv out=p.csv",
    setup=lambda c: (model(c), os.mkfifo(Path(c["tmp"]) / "f.csv")),
)
P("predict_out_txt", "predict", "predict model=models:/m/1 data=t.csv out=p.txt", setup=model)
P(
    "predict_out_is_directory",
    "predict",
    "predict model=models:/m/1 data=t.csv out=od",
    setup=lambda c: (model(c), (Path(c["tmp"]) / "od").mkdir()),
)
P(
    "predict_header_only_rows",
    "predict",
    "predict model=models:/m/1 data=h.csv out=p.csv",
    expect={0, 2},
    setup=lambda c: (model(c), write(c, "h.csv", "x0,x1,x2,x3\n")),
    check=lambda c, r: [] if r[0]["rc"] or (Path(c["tmp"]) / "p.csv").exists() else ["no output file"],
)
P(
    "predict_bad_run_id",
    "predict",
    "predict model=runs:/0123456789abcdef/model data=t.csv out=p.csv",
    setup=lambda c: write_csv(c, "t.csv", table()),
)
P(
    "predict_file_uri_etc",
    "predict",
    "predict model=file:///etc data=t.csv out=p.csv",
    setup=lambda c: write_csv(c, "t.csv", table()),
)
P("predict_version_alias_missing", "predict", "predict model=models:/m@champion data=t.csv out=p.csv", setup=model)
P(
    "predict_text_in_all_cells",
    "predict",
    "predict model=models:/m/1 data=x.csv out=p.csv",
    expect={0, 2},
    setup=lambda c: (model(c), write_csv(c, "x.csv", table().drop(columns="y").astype(str).map(lambda v: "abc"))),
)

# ---- store faults, each command -------------------------------------------------------------------------
_CMDS = {
    "train": "train data=wine epochs=1",
    "lrfind": "lr-find data=wine num_iter=20",
    "search": "search data=wine epochs=1 max_evals=2",
    "promote": "promote model_name=m allow_first=true",
    "retrain": "retrain model_name=m epochs=1",
    "predict": "predict model=models:/m/1 data=t.csv out=p.csv",
}
_FAULT_EXPECT = {"promote": {2}, "retrain": {2}}


def _t_csv(c):
    write_csv(c, "t.csv", table())


for _cmd, _line in _CMDS.items():
    _exp = _FAULT_EXPECT.get(_cmd, {1, 2})
    P(
        f"store_parent_missing_{_cmd}",
        "store",
        _line.split(),
        expect=_exp,
        setup=_t_csv,
        env={"MLFLOW_TRACKING_URI": "sqlite:///{tmp}/no/such/dir/mlflow.db"},
    )
    P(
        f"store_not_a_db_{_cmd}",
        "store",
        _line.split(),
        expect=_exp,
        setup=lambda c: (_t_csv(c), write(c, "mlflow.db", "this is not a database\n" * 200)),
    )
    P(
        f"store_closed_port_{_cmd}",
        "store",
        _line.split(),
        expect=_exp,
        setup=_t_csv,
        env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:{port}", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"},
    )
    P(
        f"store_secret_closed_port_{_cmd}",
        "store",
        _line.split(),
        expect=_exp,
        setup=_t_csv,
        env={
            "MLFLOW_TRACKING_URI": "http://alice:" + SECRET + "@127.0.0.1:{port}",
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        },
    )
P(
    "store_unknown_scheme",
    "store",
    "train data=wine epochs=1",
    expect={1, 2},
    env={"MLFLOW_TRACKING_URI": "foo://bar/baz"},
)
P(
    "store_db_path_is_directory",
    "store",
    "train data=wine epochs=1",
    expect={1, 2},
    setup=lambda c: (Path(c["tmp"]) / "mlflow.db").mkdir(),
)
P(
    "store_newer_schema_revision",
    "store",
    "train data=wine epochs=1",
    expect={1, 2},
    setup=lambda c: (
        hf(c, "train", "data=wine", "epochs=1", "log_model=false"),
        sqlite3.connect(c["db"]).execute("update alembic_version set version_num='ffffffffffff'").connection.commit(),
    ),
)
P("store_experiment_id_missing", "store", "train data=wine epochs=1", expect={2}, env={"MLFLOW_EXPERIMENT_ID": "999"})
P(
    "store_cache_empty_store_corrupt",
    "store",
    "train data=wine epochs=1 log_model=false",
    expect={0},
    env={"XDG_CACHE_HOME": "{tmp}/cache"},
    setup=lambda c: [
        write(c, f"cache/hyperflow/{p.name}", b"garbage" * 100) for p in (Path.home() / ".cache/hyperflow").glob("*.db")
    ],
)
P(
    "store_cache_home_is_file",
    "store",
    "train data=wine epochs=1 log_model=false",
    expect={0},
    env={"XDG_CACHE_HOME": "{tmp}/cachefile"},
    setup=lambda c: write(c, "cachefile", "x"),
)
P("store_tmpdir_missing", "store", "train data=wine epochs=1", expect={0, 1, 2}, env={"TMPDIR": "{tmp}/no/tmp"})


def _locked_db(c):
    hf(c, "train", "data=wine", "epochs=1", "log_model=false")
    code = (
        "import sqlite3,sys,time; con=sqlite3.connect(sys.argv[1], isolation_level=None); "
        "con.execute('begin exclusive'); print('locked', flush=True); time.sleep(300)"
    )
    c["locker"] = subprocess.Popen([PY, "-c", code, c["db"]], stdout=subprocess.PIPE, text=True)
    c["locker"].stdout.readline()


def _unlock(c):
    if "locker" in c:
        c["locker"].kill()
        c["locker"].wait()


P("store_db_locked_train", "store", "train data=wine epochs=1", expect={1, 2}, setup=_locked_db, cleanup=_unlock)


def _immutable_artifacts(c, champion: bool | None):
    if champion is not None:
        model(c, champion)
    root = Path(c["tmp"]) / "mlruns"
    root.mkdir(exist_ok=True)
    for d in [root, *[p for p in root.iterdir() if p.is_dir()]]:
        chattr(d, "+i")


for _cmd, _line in _CMDS.items():
    _champ = {"promote": False, "retrain": True, "predict": False}.get(_cmd)
    _ln = _line.replace("allow_first=true", "version=1 allow_first=true")
    P(
        f"artifacts_immutable_{_cmd}",
        "store",
        _ln.split(),
        expect={"predict": {0}}.get(
            _cmd, _FAULT_EXPECT.get(_cmd, {1, 2}) | ({1} if _cmd in ("promote", "retrain") else set())
        ),
        setup=(lambda ch: lambda c: (_immutable_artifacts(c, ch), _t_csv(c)))(_champ),
    )

# ---- signals ---------------------------------------------------------------------------------------------
P(
    "sigterm_train_midway",
    "signal",
    "train data=digits epochs=200",
    expect={130},
    max_lines=3,
    signal_after=("running", signal.SIGTERM),
)
P(
    "sigint_lrfind_midway",
    "signal",
    "lr-find data=digits num_iter=100000 end_lr=1e-3",
    expect={130},
    max_lines=3,
    signal_after=("running", signal.SIGINT),
)
P(
    "sigterm_retrain_midway",
    "signal",
    "retrain model_name=m data=digits force=true epochs=300",
    expect={130, 2},
    max_lines=3,
    signal_after=("running2", signal.SIGTERM),
    setup=lambda c: (
        hf(c, "train", "data=digits", "epochs=1", "model_name=m"),
        hf(c, "promote", "model_name=m", "version=1", "allow_first=true"),
    ),
)


# ---- concurrent -----------------------------------------------------------------------------------------
def _versions_distinct(c, results):
    rows = db_query(Path(c["db"]), "select version from model_versions where name='m'") or []
    v = sorted(r[0] for r in rows)
    return [] if v == [1, 2] else [f"versions {v}, expected [1, 2]"]


P(
    "concurrent_two_train_register",
    "concurrent",
    [["train", "data=wine", "epochs=1", "model_name=m"], ["train", "data=wine", "epochs=1", "model_name=m"]],
    expect={0},
    concurrent=True,
    check=_versions_distinct,
    setup=lambda c: hf(c, "train", "data=wine", "epochs=1", "log_model=false"),
)
P(
    "concurrent_two_train_fresh_store",
    "concurrent",
    [["train", "data=wine", "epochs=1", "model_name=m"], ["train", "data=wine", "epochs=1", "model_name=m"]],
    expect={0},
    concurrent=True,
    check=_versions_distinct,
)
P(
    "concurrent_two_lrfind_fresh_store",
    "concurrent",
    [["lr-find", "data=wine", "num_iter=20"], ["lr-find", "data=wine", "num_iter=20"]],
    expect={0},
    concurrent=True,
)


def _search_retrain_check(c, results):
    return [f"retrain exit {results[1]['rc']}"] if results[1]["rc"] not in (0, 3, 4) else []


P(
    "concurrent_search_and_retrain",
    "concurrent",
    [
        ["search", "data=wine", "epochs=1", "max_evals=2", "model_name=m", "parallelism=1"],
        ["retrain", "model_name=m", "epochs=1", "force=true"],
    ],
    expect={0, 3, 4},
    concurrent=True,
    setup=model_wine,
    check=_search_retrain_check,
)


def _resume_check(c, results):
    nums = trial_numbers(c)
    out = []
    if len(nums) != len(set(nums)):
        out.append(f"duplicate trial numbers {sorted(nums)}")
    if not any(r["rc"] == 0 for r in results):
        out.append("no resume succeeded")
    return out


P(
    "concurrent_two_resume_same_id",
    "concurrent",
    [
        ["search", "resume={sid}", "max_evals=4", "parallelism=1"],
        ["search", "resume={sid}", "max_evals=4", "parallelism=1"],
    ],
    expect={0, 2, 4},
    concurrent=True,
    check=_resume_check,
    max_lines=2,
    setup=lambda c: (
        hf(c, "search", "data=wine", "epochs=1", "max_evals=2", "parallelism=1", "register=false"),
        c.update(sid=search_id(c)),
    ),
)


def _promote_retrain_check(c, results):
    return []


P(
    "concurrent_promote_and_retrain",
    "concurrent",
    [
        ["promote", "model_name=m", "version=2", "allow_first=true"],
        ["retrain", "model_name=m", "epochs=1", "force=true"],
    ],
    expect={0, 3, 4, 5},
    concurrent=True,
    setup=lambda c: (model_wine(c), hf(c, "train", "data=wine", "epochs=1", "model_name=m", "seed=7")),
)


def _predict_same_out(c, results):
    try:
        df = pd.read_csv(Path(c["tmp"]) / "p.csv")
    except Exception as exc:
        return [f"output unreadable: {exc}"]
    want = len(pd.read_csv(Path(c["tmp"]) / "t.csv"))
    return [] if len(df) == want else [f"output has {len(df)} rows, input {want}"]


P(
    "concurrent_two_predict_same_out",
    "concurrent",
    [
        ["predict", "model=models:/m/1", "data=t.csv", "out=p.csv"],
        ["predict", "model=models:/m/1", "data=t.csv", "out=p.csv"],
    ],
    expect={0},
    concurrent=True,
    setup=model,
    check=_predict_same_out,
)


# ------------------------------------------------------------------------------------------------ runner
def fmt(s: str, ctx: dict) -> str:
    try:
        return s.format(**ctx)
    except (KeyError, IndexError, ValueError):
        return s


def stderr_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def wait_running(db: Path, proc: subprocess.Popen, need: int, deadline: float) -> bool:
    while time.time() < deadline and proc.poll() is None:
        rows = db_query(db, "select count(*) from runs where status='RUNNING'")
        if rows and rows[0][0] >= need:
            time.sleep(1.0)
            return True
        time.sleep(0.3)
    return False


def run_cmd(args: list[str], ctx: dict, env: dict, sig: tuple | None = None) -> dict:
    start = time.time()
    proc = subprocess.Popen(
        [PY, "-m", "hyperflow", *args],
        cwd=ctx["tmp"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # as from a terminal
    timer = None
    if sig:
        need = 2 if sig[0] == "running2" else 1

        def send() -> None:
            if wait_running(Path(ctx["db"]), proc, need, start + 90):
                try:
                    proc.send_signal(sig[1])
                except ProcessLookupError:
                    pass

        timer = threading.Thread(target=send, daemon=True)
        timer.start()
    timed_out = False
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
    return {
        "args": args,
        "rc": proc.returncode,
        "timed_out": timed_out,
        "stdout": out,
        "stderr": err,
        "seconds": round(time.time() - start, 1),
    }


def run_probe(p: Probe, keep: bool) -> dict:
    ROOT.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f"{p.name}-", dir=ROOT)
    ctx: dict[str, Any] = {"tmp": tmp, "db": f"{tmp}/mlflow.db", "port": closed_port()}
    base_env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db", "PYTHONUNBUFFERED": "1"}
    base_env.pop("MLFLOW_EXPERIMENT_ID", None)
    base_env.pop("MLFLOW_EXPERIMENT_NAME", None)
    ctx["env"] = base_env
    rec: dict[str, Any] = {"name": p.name, "family": p.family, "expect": sorted(p.expect)}
    try:
        try:
            if p.setup:
                p.setup(ctx)
        except Exception as exc:
            rec.update(verdict="setup-failed", problems=[f"setup: {exc}"])
            return rec
        env = {**base_env, **{k: fmt(v, ctx) for k, v in p.env.items()}}
        db = Path(ctx["db"])
        before = snapshot(db)
        cmds = p.args if p.concurrent else [p.args]
        cmds = [[fmt(a, ctx) for a in c] for c in cmds]
        if p.concurrent:
            with concurrent.futures.ThreadPoolExecutor(len(cmds)) as ex:
                results = list(ex.map(lambda c: run_cmd(c, ctx, env), cmds))
        else:
            results = [run_cmd(cmds[0], ctx, env, p.signal_after)]
        time.sleep(0.2)
        after = snapshot(db)
        problems: list[str] = []
        for r in results:
            r["stderr_lines"] = len(stderr_lines(r["stderr"]))
            r["traceback"] = "Traceback" in r["stderr"] or "Traceback" in r["stdout"]
            if r["timed_out"]:
                problems.append(f"timed out after {TIMEOUT:.0f} s")
            elif r["rc"] not in p.expect:
                problems.append(f"exit {r['rc']} (expected {'/'.join(map(str, sorted(p.expect)))})")
            if r["traceback"]:
                problems.append("traceback")
            if r["rc"] not in (0, None) and r["stderr_lines"] > p.max_lines:
                problems.append(f"{r['stderr_lines']} stderr lines")
            if r["rc"] not in (0, None) and r["stderr_lines"] == 0:
                problems.append("no message on stderr")
            if SECRET in r["stdout"] + r["stderr"]:
                problems.append("password printed")
        runs_before = {x[0] for x in before["runs"] or []}
        new_runs = [x for x in after["runs"] or [] if x[0] not in runs_before]
        running = [x for x in after["runs"] or [] if x[1] == "RUNNING"]
        rec["running_left"] = len(running)
        rec["new_runs"] = [f"{x[2]}:{x[1]}" for x in new_runs]
        if running:
            problems.append(f"{len(running)} run(s) left RUNNING")
        if any(r["rc"] == 2 for r in results) and not p.concurrent and new_runs and p.no_run_on_2:
            problems.append(f"exit 2 but run(s) created: {', '.join(rec['new_runs'])}")
        reg_changed = {k: v or [] for k, v in before["registry"].items()} != {
            k: v or [] for k, v in after["registry"].items()
        }
        rec["registry_changed"] = reg_changed
        if reg_changed and all(r["rc"] not in (0, None) for r in results):
            problems.append("registry changed")
        if p.check:
            problems += p.check(ctx, results)
        if db.exists() and after["runs"] is None and before["runs"] is not None:
            problems.append("store unreadable after the command")
        rec["results"] = [{k: (v[-3000:] if isinstance(v, str) else v) for k, v in r.items()} for r in results]
        rec["problems"] = problems
        rec["verdict"] = "defect" if problems else "ok"
        return rec
    finally:
        if p.cleanup:
            try:
                p.cleanup(ctx)
            except Exception:
                pass
        subprocess.run(["chattr", "-R", "-i", tmp], capture_output=True)
        if not keep and rec.get("verdict") == "ok":
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            rec["tmp"] = tmp


def cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", nargs="*", help="run probes whose name contains any of these")
    ap.add_argument("--keep", action="store_true", help="keep every temporary folder (default: only defects)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "edge_probe"))
    a = ap.parse_args()
    todo = [p for p in PROBES if not a.only or any(s in p.name for s in a.only)]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{len(todo)} probes, {a.jobs} at a time; folders under {ROOT}", flush=True)
    single = [p for p in todo if not p.concurrent]
    multi = [p for p in todo if p.concurrent]
    recs: list[dict] = []
    started = time.time()

    def done(rec: dict) -> None:
        recs.append(rec)
        r = rec.get("results", [{}])
        print(
            f"[{len(recs):3d}/{len(todo)} {time.time() - started:6.0f}s] {rec['verdict']:12s} {rec['name']:40s} "
            f"exit {','.join(str(x.get('rc')) for x in r)}  {'; '.join(rec.get('problems', []))}",
            flush=True,
        )

    with concurrent.futures.ThreadPoolExecutor(a.jobs) as ex:
        for rec in ex.map(lambda p: run_probe(p, a.keep), single):
            done(rec)
    for p in multi:  # two processes each: one at a time
        done(run_probe(p, a.keep))
    order = {p.name: i for i, p in enumerate(PROBES)}
    recs.sort(key=lambda r: order[r["name"]])
    if a.only and (out / "results.json").exists():  # a partial re-run replaces those probes in the last results
        fresh = {r["name"] for r in recs}
        recs += [
            r for r in json.loads((out / "results.json").read_text()) if r["name"] not in fresh and r["name"] in order
        ]
    recs.sort(key=lambda r: order[r["name"]])
    (out / "results.json").write_text(json.dumps(recs, indent=1))
    lines = [
        "| # | probe | family | command | exit | stderr lines | traceback | RUNNING left | registry changed | "
        "s | verdict | problem / first stderr line |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(recs, 1):
        res = r.get("results", [])
        p = next(p for p in PROBES if p.name == r["name"])
        cmd = " & ".join("hyperflow " + " ".join(x["args"]) for x in res) if res else str(p.args)
        if len(cmd) > 110:
            cmd = cmd[:107] + "..."
        envs = " ".join(f"{k}={v}" for k, v in p.env.items())
        first = ""
        if res:
            errl = stderr_lines(res[0]["stderr"])
            first = errl[-1] if errl else ""
        note = "; ".join(r.get("problems", [])) or first
        lines.append(
            "| "
            + " | ".join(
                cell(str(x))
                for x in [
                    i,
                    r["name"],
                    r["family"],
                    (envs + " " if envs else "") + cmd,
                    ",".join(str(x["rc"]) for x in res),
                    ",".join(str(x["stderr_lines"]) for x in res),
                    "y" if any(x["traceback"] for x in res) else "n",
                    r.get("running_left", "?"),
                    "y" if r.get("registry_changed") else "n",
                    ",".join(str(x["seconds"]) for x in res),
                    r["verdict"],
                    note[:160],
                ]
            )
            + " |"
        )
    counts: dict[str, int] = {}
    for r in recs:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    lines.append("")
    lines.append("counts: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + f" of {len(recs)}")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print(lines[-1])
    print(f"results in {out}/results.json and {out}/table.md; {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
