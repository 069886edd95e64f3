"""The docs that are generated from the code say what the code says."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _generator(root: Path, name: str = "architecture"):
    """docs/<name>.py of the tree at ``root``, loaded as a module."""
    spec = importlib.util.spec_from_file_location(f"{name}_{abs(hash(root))}", root / "docs" / f"{name}.py")
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


def test_the_settings_page_is_what_the_config_fields_say():
    assert _generator(ROOT, "settings").main(["--check"]) == 0, "run python docs/settings.py"


def test_the_settings_page_lists_every_setting_of_every_command_with_its_help_text():
    from hyperflow.cli.help import SECTIONS
    from hyperflow.config import PromoteConfig, SearchConfig, TrainConfig
    from hyperflow.config.fields import fields_of

    page = (ROOT / "docs" / "settings.md").read_text()
    for command in ("train", "search", "promote", "retrain", "predict"):
        assert f"\n## {command}\n" in page
    rows = {line.split("`")[1] for line in page.splitlines() if line.startswith("| `")}
    assert set(fields_of(SearchConfig)) <= rows and set(fields_of(TrainConfig)) <= rows
    assert set(fields_of(PromoteConfig)) - rows == {"gate_rules"}  # filled from gate.<metric>.<rule>=value
    assert sum(len(section.keys) for sections in SECTIONS.values() for section in sections) == len(
        [line for line in page.splitlines() if line.startswith("| `")]
    )
    pruner = (
        "| `pruner` | `median` | median = median stopping rule, asha = successive halving, hyperband = brackets of "
        "successive halving; none \\| median \\| asha \\| hyperband |"
    )
    assert pruner in page


def test_the_settings_check_fails_when_the_page_differs(tmp_path, monkeypatch, capsys):
    generator = _generator(ROOT, "settings")
    monkeypatch.setattr(generator, "PAGE", tmp_path / "settings.md")
    monkeypatch.setattr(generator, "ROOT", tmp_path)
    assert generator.main(["--check"]) == 1  # no page yet
    generator.main([])
    assert generator.main(["--check"]) == 0
    page = (tmp_path / "settings.md").read_text()
    (tmp_path / "settings.md").write_text(page.replace("| `max_evals` | `30` |", "| `max_evals` | `40` |"))
    assert generator.main(["--check"]) == 1
    assert "run python docs/settings.py" in capsys.readouterr().err


def test_every_link_of_the_readme_leads_to_a_file_and_heading_that_exist():
    """The README is read on GitHub and PyPI, outside the docs site whose strict build checks the pages' links."""
    import re

    from markdown.extensions.toc import slugify

    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    local = [link for link in links if not link.startswith(("http://", "https://"))]
    assert len(local) > 10
    for link in local:
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.exists(), f"README links {link}: no {path}"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", target.read_text(), flags=re.M)
            assert anchor in {slugify(h, "-") for h in headings}, f"README links {link}: no such heading in {path}"
