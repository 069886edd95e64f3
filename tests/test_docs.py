"""The docs that are generated from the code say what the code says."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _generator(root: Path):
    """docs/architecture.py of the tree at ``root``, loaded as a module."""
    spec = importlib.util.spec_from_file_location(f"architecture_{abs(hash(root))}", root / "docs" / "architecture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_architecture_page_lists_every_module_with_its_docstring():
    page = (ROOT / "docs" / "architecture.md").read_text()
    modules = list((ROOT / "src" / "hyperflow").rglob("*.py"))
    assert len([line for line in page.splitlines() if line.startswith("| `")]) == len(modules)
    assert _generator(ROOT).page() == page, "docs/architecture.md is out of date: run python docs/architecture.py"


def test_the_architecture_check_fails_when_a_module_is_missing_from_the_page(tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "architecture.py").write_text((ROOT / "docs" / "architecture.py").read_text())
    package = tmp_path / "src" / "hyperflow"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""The package."""\n')
    generator = _generator(tmp_path)
    assert generator.main([]) == 0 and generator.main(["--check"]) == 0
    (package / "new.py").write_text('"""A new module: its job."""\n')
    assert generator.main(["--check"]) == 1
    assert "run python docs/architecture.py" in capsys.readouterr().err
    generator.main([])
    assert "| `new.py` | A new module: its job. |" in (tmp_path / "docs" / "architecture.md").read_text()
