"""Bad input on the command line: one line on stderr, exit code 2, no traceback, no run written."""

import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import pytest

from hyperflow.cli import main, parse_settings
from hyperflow.errors import UsageError


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad")
    (root / "garbage.csv").write_bytes(b"\x00\xff\xfe\x00 not a table \x00")
    (root / "ok.csv").write_text("a,b,label\n" + "".join(f"{i},{i % 3},{'xy'[i % 2]}\n" for i in range(40)))
    (root / "nan.csv").write_text("a,label\n1,\n2,\n3,\n")
    (root / "one.csv").write_text("a,label\n1,x\n2,x\n3,x\n")
    (root / "bad_models.py").write_text(textwrap.dedent("""
        def not_module(input_shape, output_size):
            return "a string"
    """))
    return {k: str(root / f) for k, f in
            [("garbage", "garbage.csv"), ("ok", "ok.csv"), ("nan", "nan.csv"), ("one", "one.csv"), ("root", "")]}


CASES = [
    (["data=missing.csv", "target=y"], "data 'missing.csv' not found"),
    (["data={garbage}", "target=label"], "cannot read"),
    (["data={ok}", "target=price"], "target column 'price' is not in"),
    (["data={nan}", "target=label"], "has no values"),
    (["data={one}", "target=label"], "single class"),
    (["loss=hinge"], "unknown loss 'hinge'"),
    (["optimizer=lion"], "unknown optimizer 'lion'"),
    (["schedule=step"], "unknown schedule 'step'"),
    (["model=resnet50"], "unknown model 'resnet50'"),
    (["loss=dice"], "loss=dice does not fit a classification task"),
    (["lr=0"], "lr must be positive"),
    (["lr=-0.1"], "lr must be positive"),
    (["epochs=0"], "epochs must be positive"),
    (["batch_size=0"], "batch_size must be positive"),
    (["data=wine", "batch_size=100000"], "batch_size=100000 is larger than the 124 training rows"),
    (["model=no_such_module:build"], "cannot import module 'no_such_module'"),
    (["model=bad_models:not_module"], "returned str, not a torch.nn.Module"),
    (["epochs=ten"], "expected a whole number"),
    (["nonsense"], "unexpected argument 'nonsense'"),
    (["config=nowhere.yaml"], "config file 'nowhere.yaml' not found"),
]


@pytest.mark.parametrize("args, fragment", CASES, ids=[c[1][:30] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_no_run(args, fragment, files, capsys, monkeypatch, experiment):
    monkeypatch.chdir(files["root"])
    monkeypatch.setattr(sys, "path", list(sys.path))
    argv = ["train", *(a.format(**files) for a in args), f"experiment={experiment}", "progress=false"]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hyperflow: error: ") and fragment in err
    assert "\n" not in err and "Traceback" not in err
    exp = mlflow.get_experiment_by_name(experiment)
    assert mlflow.search_runs([exp.experiment_id], output_format="list") == []


def test_real_process_exit_code_and_no_traceback(tmp_path: Path, tracking_uri):
    proc = subprocess.run([sys.executable, "-m", "hyperflow", "train", "lr=-1"], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["hyperflow: error: lr must be positive, got -1.0: pass e.g. lr=0.003"]


def test_help_lists_every_setting(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "epochs" in out and "schedule" in out and "model_name" in out
    assert main(["fly"]) == 2


def test_setting_syntaxes():
    assert parse_settings(["lr=0.1", "--epochs", "3", "--batch-size=8"]) == {"lr": "0.1", "epochs": "3",
                                                                             "batch_size": "8"}
    with pytest.raises(UsageError):
        parse_settings(["--epochs"])


def test_train_command_prints_a_summary(capsys, experiment):
    assert main(["train", "epochs=2", "log_model=false", "progress=false", f"experiment={experiment}"]) == 0
    out = capsys.readouterr().out
    assert "hyperflow train: completed after 2 epochs" in out and "test_accuracy" in out
    assert "#/experiments/" in out
