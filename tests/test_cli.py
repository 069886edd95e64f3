"""Bad input on the command line: one line on stderr, exit code 2, no traceback, no run written."""

import sys
import textwrap
import uuid
from pathlib import Path

import forked
import mlflow
import pytest

from hyperflow.cli import main
from hyperflow.cli.parsing import parse, parse_settings
from hyperflow.errors import UsageError


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad")
    (root / "garbage.csv").write_bytes(b"\x00\xff\xfe\x00 not a table \x00")
    (root / "ok.csv").write_text("a,b,label\n" + "".join(f"{i},{i % 3},{'xy'[i % 2]}\n" for i in range(40)))
    (root / "nan.csv").write_text("a,label\n1,\n2,\n3,\n")
    (root / "dup.yaml").write_text("epochs: 2\nlr: 0.01\nepochs: 3\n")
    (root / "one.csv").write_text("a,label\n1,x\n2,x\n3,x\n")
    (root / "bad_models.py").write_text(
        textwrap.dedent("""
        import torch

        def not_module(input_shape, output_size):
            return "a string"

        def frozen(input_shape, output_size):
            return torch.nn.Linear(input_shape[0], output_size).requires_grad_(False)
    """)
    )
    return {
        k: str(root / f)
        for k, f in [
            ("garbage", "garbage.csv"),
            ("ok", "ok.csv"),
            ("nan", "nan.csv"),
            ("one", "one.csv"),
            ("dup", "dup.yaml"),
            ("root", ""),
        ]
    }


CASES = [
    (["data=missing.csv", "target=y"], "data 'missing.csv' not found"),
    (["data={garbage}", "target=label"], "is a binary file"),
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
    (["batch_norm=true", "batch_size=1"], "batch_norm=true needs batch_size of at least 2"),
    (["model=no_such_module:build"], "cannot import module 'no_such_module'"),
    (["model=bad_models:not_module"], "returned str, not a torch.nn.Module"),
    (["model=bad_models:frozen"], "model bad_models:frozen has no trainable parameters"),
    (["epochs=ten"], "expected a whole number"),
    (["nonsense"], "unexpected argument 'nonsense'"),
    (["config=nowhere.yaml"], "config file 'nowhere.yaml' not found"),
    (["config={dup}"], "'epochs' appears twice (lines 1 and 3): keep one"),
    (["data=breast_cancer", "target=nosuch"], "data 'breast_cancer' is built in and brings its own target"),
    (["model_name=team/churn"], "must not contain '/' or ':' (e.g. model_name=team-churn)"),
    # absurd sizes: refused at once, before any data is read or memory allocated
    (["width=1e10"], "width must be at most 1048576, got 10000000000"),
    (["depth=1e6"], "depth must be at most 1000"),
    (["seed=1e30"], "seed must be a whole number from 0 to 4294967295 (numpy's range), got 1e+30"),
    (["seed=-1"], "seed must be a whole number from 0 to"),
    (["seed=1e400"], "expected a whole number"),
    (["epochs=1e12"], "epochs must be at most 1000000"),
    (["batch_size=1e12"], "batch_size must be at most 16777216"),
    (["channels=1e9"], "channels must be at most 16384"),
    (["width=200000", "depth=4"], "needs about 2,384 GiB for its weights, gradients and optimizer state"),
    (["num_iter=1e9"], "num_iter must be at most 1000000"),
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


@pytest.mark.integration
def test_real_process_exit_code_and_no_traceback(tmp_path: Path, tracking_uri):
    proc = forked.run(
        [sys.executable, "-m", "hyperflow", "train", "lr=-1"], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["hyperflow: error: lr must be positive, got -1.0: pass e.g. lr=0.003"]


def test_help_lists_every_setting(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "epochs" in out and "schedule" in out and "model_name" in out
    assert main(["fly"]) == 2


@pytest.mark.parametrize("command", ["train", "lr-find", "search", "promote", "retrain", "predict"])
def test_the_help_of_every_command_is_made_from_its_settings(capsys, command):
    """One source for each setting: --help lists every field of the command's configs with its choices,
    range and default, as the fields declare them."""
    from hyperflow.cli.parsing import CONFIGS
    from hyperflow.config.help import setting_help

    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    own = CONFIGS[command][0]
    for name in own.__pydantic_fields__:
        if name != "gate_rules":  # filled from gate.<metric>.<rule>=value, not a setting of its own
            assert f"  {name} " in out and setting_help(own, name) in out, (command, name)
    if command == "search":
        assert "  data " in out and "  target " in out  # the data a search's trials are trained on
        assert "tpe | random | grid" in out and "at least 1, at most 1000000" in out


def test_setting_syntaxes():
    assert parse_settings(["lr=0.1", "--epochs", "3", "--batch-size=8"]) == {
        "lr": "0.1",
        "epochs": "3",
        "batch_size": "8",
    }
    with pytest.raises(UsageError):
        parse_settings(["--epochs"])


@pytest.mark.integration
def test_train_command_prints_a_summary(capsys, experiment):
    assert main(["train", "epochs=2", "log_model=false", "progress=false", f"experiment={experiment}"]) == 0
    out = capsys.readouterr().out
    assert "hyperflow train: completed after 2 epochs" in out and "test_accuracy" in out
    (run,) = mlflow.search_runs(experiment_names=[experiment], output_format="list")
    page = f"#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}?workflowType=machine_learning"
    link = f"open http://127.0.0.1:5000/{page} while"
    assert out.splitlines()[-1].startswith(f"  {link}") and "mlflow ui --backend-store-uri" in out.splitlines()[-1]


def test_the_printed_link_goes_to_the_run_and_says_how_to_open_it(tracking_uri):
    """A local store: `mlflow ui` serves the run's page, and the line says it must be running; a tracking server: its
    own page for the run (without the user name and password of the URI). Both in the model-training view, which
    MLflow 3.17's UI takes from the address (its default is the GenAI view)."""
    from hyperflow.cli.summaries import browse_line

    line = browse_line("7", "abc123")
    assert line == (
        "  open http://127.0.0.1:5000/#/experiments/7/runs/abc123?workflowType=machine_learning while "
        f"`mlflow ui --backend-store-uri {tracking_uri}`"
        " runs (start it first)"
    )
    mlflow.set_tracking_uri("https://alice:s3cret@mlflow.example.org/")
    try:
        page = "#/experiments/7/runs/abc123?workflowType=machine_learning"
        assert browse_line("7", "abc123") == f"  open https://mlflow.example.org/{page}"
    finally:
        mlflow.set_tracking_uri(tracking_uri)


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err.strip()


@pytest.mark.parametrize(
    "argv, suggestion",
    [
        (["search", "max_eval=3"], "unknown setting 'max_eval': did you mean 'max_evals'?"),
        (["search", "epoch=3"], "did you mean 'epochs'?"),  # a training setting of the trials
        (["promote", "model_nam=x"], "did you mean 'model_name'?"),
        (["promote", "dryrun=true", "model_name=x"], "did you mean 'dry_run'?"),
        (["retrain", "model_name=x", "max_eval=3"], "did you mean 'max_evals'?"),
        (["retrain", "model_name=x", "optimiser=sgd"], "did you mean 'optimizer'?"),
        (["predict", "modle=models:/m/1", "data=x.csv"], "did you mean 'model'?"),
        (["lr_find", "num_iters=50"], "did you mean 'num_iter'?"),
    ],
)
def test_a_misspelled_setting_suggests_a_setting_of_that_command(capsys, argv, suggestion):
    code, _, err = run_main(capsys, *argv)
    assert code == 2 and suggestion in err and len(err.splitlines()) == 1


def test_a_misspelled_setting_in_a_config_file_too(tmp_path, capsys):
    (tmp_path / "s.yaml").write_text("max_eval: 3\n")
    code, _, err = run_main(capsys, "search", f"config={tmp_path / 's.yaml'}")
    assert code == 2 and "did you mean 'max_evals'?" in err


def test_commands_take_either_spelling(capsys):
    assert parse(["lr_find", "num_iter=50"]).command == parse(["lr-find"]).command == "lr-find"
    assert parse(["lr_find", "num_iter=50"]).train.num_iter == 50
    code, out, _ = run_main(capsys, "lr_find", "--help")
    assert code == 0 and "usage: hyperflow lr-find" in out and "num_iter" in out
    assert run_main(capsys, "lr-fnd")[0] == 2


@pytest.mark.parametrize(
    "command", [["train", "epochs=1"], ["search", "max_evals=1"], ["promote", "model_name=anything"]]
)
def test_a_deleted_experiment_is_refused_with_how_to_restore_it(capsys, command):
    client = mlflow.MlflowClient()
    name = f"deleted-{uuid.uuid4().hex[:8]}"
    experiment_id = client.create_experiment(name)
    client.delete_experiment(experiment_id)
    code, _, err = run_main(capsys, *command, f"experiment={name}")
    assert code == 2 and len(err.splitlines()) == 1
    assert (
        f"experiment '{name}' was deleted: restore it with 'mlflow experiments restore --experiment-id {experiment_id}'"
        in err
        and "experiment=NAME" in err
    )
    assert client.search_runs([experiment_id], run_view_type=mlflow.entities.ViewType.ALL) == []


@pytest.mark.integration
def test_an_interrupted_search_says_so_once_with_the_resume_command(tmp_path, capsys, monkeypatch, experiment):
    """Ctrl-C inside a trial (here raised by the model factory): the runs end KILLED, and stderr holds
    exactly one line, the one that says how to resume."""
    module = f"ctrl_c_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent("""
        import torch
        calls = 0

        def build(input_shape, output_size, **kwargs):  # the search's check before any run, then a trial
            global calls
            calls += 1
            if calls > 1:
                raise KeyboardInterrupt
            return torch.nn.Linear(input_shape[0], output_size)
    """)
    )
    (tmp_path / "space.yaml").write_text("lr: {type: loguniform, low: 1.0e-3, high: 1.0e-2}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    code, _, err = run_main(
        capsys,
        "search",
        f"model={module}:build",
        f"space={tmp_path / 'space.yaml'}",
        "max_evals=2",
        "seed_presets=false",
        "progress=false",
        f"experiment={experiment}",
        "parallelism=1",
    )  # in this process; workers: tests/test_parallel.py
    assert code == 130
    assert [line for line in err.splitlines() if "interrupted" in line] == err.splitlines(), err
    assert len(err.splitlines()) == 1 and "hyperflow search resume=" in err
    runs = mlflow.search_runs(experiment_names=[experiment], output_format="list")
    assert runs and all(r.info.status == "KILLED" for r in runs)
