"""The architecture as CI checks it: the import-linter contracts in pyproject.toml (layers cli > workflows >
engine > tracking > runtime | core > config > errors | names | machine, no cycles, mlflow imported by
hyperflow.tracking only, core and config free of mlflow and hyperopt, runtime free of mlflow, hyperopt and
torch, the search engine free of hyperflow.tracking and mlflow, hyperopt inside the engine) hold for the
package, and each of them catches the violation it is there for (run on a copy of the package with one
planted)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # every test here starts processes

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "pyproject.toml"


def lint_imports(*, package_dir: Path | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`lint-imports` of this environment (the console script next to the interpreter, or its module)."""
    script = Path(sys.executable).with_name("lint-imports")
    command = (
        [str(script)]
        if script.exists()
        else [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"]
    )
    env = dict(os.environ)
    if package_dir is not None:  # this copy of the package is the one import-linter finds
        env["PYTHONPATH"] = os.pathsep.join([str(package_dir), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run(
        [*command, str(CONFIG), "--no-cache", "--no-logo"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def contracts() -> list[dict]:
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # 3.10: the ids are all this file needs
        return [{"id": i} for i in re.findall(r'^id = "([^"]+)"', CONFIG.read_text(), re.M)]
    return tomllib.loads(CONFIG.read_text())["tool"]["importlinter"]["contracts"]


def test_the_package_keeps_every_import_contract():
    proc = lint_imports()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"Contracts: {len(contracts())} kept, 0 broken." in proc.stdout


def test_each_contract_catches_what_it_forbids(tmp_path):
    assert {c["id"] for c in contracts()} == {
        "layers",
        "acyclic",
        "mlflow-in-tracking-only",
        "pure-core",
        "engine-knows-no-runs",
        "hyperopt-in-the-engine",
        "plain-runtime",
    }
    package = tmp_path / "src" / "hyperflow"
    shutil.copytree(ROOT / "src" / "hyperflow", package, ignore=shutil.ignore_patterns("__pycache__"))
    planted = {
        "tracking/planted.py": "from hyperflow.engine import space\n",  # upward: tracking -> engine
        "planted.py": "VALUE = 1\n",  # a top-level module in no layer
        "core/planted_a.py": "from hyperflow.core import planted_b\n",  # a cycle inside core
        "core/planted_b.py": "from hyperflow.core import planted_a\n",
        "workflows/planted.py": "import mlflow\n",  # mlflow outside tracking
        "config/planted.py": "import hyperopt\n",  # hyperopt in config
        "runtime/planted.py": "import torch\n",  # torch in runtime
        "engine/planted.py": "from hyperflow.tracking import search_store\n",  # the engine reaching for runs
        "workflows/planted_hp.py": "import hyperopt\n",  # hyperopt outside the engine
    }
    for path, text in planted.items():
        (package / path).write_text(text)
    proc = lint_imports(package_dir=tmp_path / "src", cwd=tmp_path)
    out = proc.stdout
    assert proc.returncode != 0 and f"Contracts: 0 kept, {len(contracts())} broken." in out, out + proc.stderr
    assert "hyperflow.tracking.planted -> hyperflow.engine.space" in out
    assert "- hyperflow.planted" in out  # not listed as a layer
    assert ".planted_a -> .planted_b" in out or ".planted_b -> .planted_a" in out
    assert "hyperflow.workflows.planted -> mlflow" in out
    assert "hyperflow.config.planted -> hyperopt" in out
    assert "hyperflow.runtime.planted -> torch" in out
    assert "hyperflow.engine.planted -> hyperflow.tracking" in out
    assert "hyperflow.workflows.planted_hp -> hyperopt" in out


def test_only_runtime_signals_installs_signal_handlers_or_ends_the_process_at_once():
    """One owner of the process's signal handlers and of its immediate exit: the other modules say what a signal
    should do through hyperflow.runtime.signals."""
    package = ROOT / "src" / "hyperflow"
    owner = package / "runtime" / "signals.py"
    calls = re.compile(r"\bsignal\.signal\(|\bos\._exit\b(?!``)")
    others = [str(p.relative_to(package)) for p in package.rglob("*.py") if p != owner and calls.search(p.read_text())]
    assert others == []
    assert calls.search(owner.read_text())
