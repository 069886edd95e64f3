"""The docs site builds with `mkdocs build --strict` (as .ci/run builds it): every page in the navigation,
every link and every #anchor leading somewhere."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _build(project: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.integration
def test_the_docs_site_builds_strictly(tmp_path):
    result = _build(ROOT, tmp_path / "site")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "settings" / "index.html").exists()
    assert (tmp_path / "site" / "search" / "index.html").exists()


@pytest.mark.integration
def test_a_broken_link_or_a_page_left_out_of_the_navigation_fails_the_build(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(ROOT / "docs", project / "docs", ignore=shutil.ignore_patterns("*.png"))
    shutil.copy(ROOT / "mkdocs.yml", project / "mkdocs.yml")
    (project / "docs" / "benchmarks.md").write_text("# Benchmarks\n")
    model = project / "docs" / "model.md"
    model.write_text(model.read_text() + "\nSee [the search](search.md#no-such-heading).\n")
    result = _build(project, tmp_path / "site")
    assert result.returncode == 1
    assert "'model.md' contains a link 'search.md#no-such-heading'" in result.stderr
    model.write_text(model.read_text().replace("#no-such-heading", ""))
    (project / "docs" / "stray.md").write_text("# A page no one can reach\n")
    result = _build(project, tmp_path / "site")
    assert result.returncode == 1
    assert "stray.md" in result.stderr
