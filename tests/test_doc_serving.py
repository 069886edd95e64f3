"""The serving examples of docs/serving.md run as written: against the model the README's first command registers
(hyperflow-digits, alias challenger) and the one the page's own search of a table registers
(hyperflow-churn-churned), each served by a real `mlflow models serve` process. Only the searches are shortened
(two trials of two epochs) and the ports are free ones."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from test_lifecycle import serve_model

from hyperflow.cli import main

ROOT = Path(__file__).resolve().parents[1]
PAGE = (ROOT / "docs" / "serving.md").read_text()
SHORT = ["max_evals=2", "epochs=2", "parallelism=1", "progress=false"]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", PAGE, flags=re.S)


def block_with(language: str, text: str) -> str:
    (block,) = [b for b in blocks(language) if text in b]
    return block


def served_model(block: str) -> tuple[str, str]:
    """The model URI and the port of the block's `mlflow models serve` line."""
    line = next(line for line in block.splitlines() if line.startswith("mlflow models serve"))
    words = shlex.split(line.rstrip(" &"))
    return words[words.index("-m") + 1], words[words.index("-p") + 1]


def search(line: str, cwd: Path) -> None:
    """A documented `hyperflow search ...` line, run (shortened) in ``cwd``."""
    words = shlex.split(line.split("#")[0])
    assert words[:2] == ["hyperflow", "search"], line
    assert main([*words[1:], *SHORT]) == 0


def churn_table(path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, n).astype(float),
            "city": rng.choice(["oslo", "lima", "pune"], n),
            "plan": rng.choice(["free", "pro"], n),
        }
    )
    frame["churned"] = np.where((frame["plan"] == "free") & (frame["age"] < 40), "yes", "no")
    frame.loc[::17, "age"] = None
    frame.to_csv(path, index=False)


@pytest.mark.integration
def test_the_digits_example_scores_three_rows_of_the_model_the_first_command_registers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    search("hyperflow search", tmp_path)  # what `mlflow run . -e search` runs, on the built-in digits
    block = block_with("bash", "hyperflow-digits@challenger")
    model, port = served_model(block)
    assert model == "models:/hyperflow-digits@challenger"
    script = block.split("<<'EOF'\n")[1].split("\nEOF")[0]
    with serve_model(model, mlflow.get_tracking_uri()) as free:
        done = subprocess.run(
            [sys.executable, "-c", script.replace(f"127.0.0.1:{port}", f"127.0.0.1:{free}")],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    predictions = json.loads(done.stdout)["predictions"]
    assert len(predictions) == 3 and {"prediction", "probability_0", "probability_9"} <= set(predictions[0])


@pytest.mark.integration
def test_the_table_examples_run_in_python_and_over_http(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    churn_table(tmp_path / "churn.csv")
    search_line = next(line for line in block_with("bash", "data=churn.csv").splitlines() if line.strip())
    search(search_line, tmp_path)

    python = block_with("python", "hyperflow-churn-churned")
    namespace: dict = {}
    exec(compile(python, "docs/serving.md", "exec"), namespace)  # the page's lines, as written
    model = namespace["model"]
    both = model.predict(pd.DataFrame({"age": [41, None], "city": ["oslo", "lima"], "plan": ["pro", "free"]}))
    assert list(both.columns) == ["prediction", "probability_no", "probability_yes"] and len(both) == 2
    assert len(model.predict(pd.DataFrame({"age": [], "city": [], "plan": []}))) == 0  # zero rows in Python

    block = block_with("bash", "curl")
    uri, port = served_model(block)
    assert uri == "models:/hyperflow-churn-churned@challenger"
    curls = re.findall(r"^curl .*?(?:\\\n.*?)*$", block, flags=re.M)
    assert len(curls) == 2
    with serve_model(uri, mlflow.get_tracking_uri()) as free:
        answers = [
            subprocess.run(
                ["bash", "-c", command.replace(f"127.0.0.1:{port}", f"127.0.0.1:{free}")],
                capture_output=True,
                text=True,
                timeout=60,
            )
            for command in curls
        ]
        zero_rows = ["-H", "Content-Type: application/json", "-d", '{"dataframe_records": []}']
        status = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{free}/invocations"]
        empty = subprocess.run(
            [*status, *zero_rows],
            capture_output=True,
            text=True,
            timeout=60,
        )
    first, second = (json.loads(a.stdout)["predictions"] for a in answers)
    assert len(first) == 2 and {p["prediction"] for p in first} <= {"yes", "no"}
    assert len(second) == 1 and abs(second[0]["probability_no"] + second[0]["probability_yes"] - 1) < 1e-5
    assert empty.stdout == "400"  # the page says so: MLflow's scoring server refuses zero rows
