"""Takes the docs' pictures of a search in MLflow's UI: runs a short search in a fresh folder, starts `mlflow ui`
on that store, and has a headless Chromium photograph the page the search's printed link opens (the model-training
view) and the search run's learning curves and best so far.

    python docs/screenshot.py                     # writes docs/search_ui.png, search_curves.png, search_best_so_far.png
    python docs/screenshot.py --out /tmp/x.png --max-evals 12 --view runs    # one picture: the experiment's runs table

Needs Chromium (Debian: `apt-get install chromium`; also found as chromium-browser or google-chrome on PATH).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
# view -> (the picture the docs show, what follows the search run's page in its address, window height)
VIEWS = {
    "run": ("search_ui.png", "", 1300),  # the search run: its description's links, plots, registered model
    "curves": ("search_curves.png", "/artifacts/plots/learning_curves.png", 900),
    "best_so_far": ("search_best_so_far.png", "/artifacts/plots/best_so_far.png", 900),
    "runs": ("search_runs.png", None, 900),  # the experiment's runs table (not in the docs)
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(url, timeout=2).status == 200:
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {seconds:.0f} s")


def search(folder: Path, max_evals: int) -> str:
    """A short search, as `hyperflow search` runs it; the page its printed link opens."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlflow.db", "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-m", "hyperflow", "search", f"max_evals={max_evals}", "progress=false"]
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, check=True)
    match = re.search(r"open http://127\.0\.0\.1:5000/(#/experiments/\S+/runs/\S+)", done.stdout)
    if not match:
        raise SystemExit(f"no link in the search's output:\n{done.stdout}")
    return match.group(1)


def page_of(link: str, view: str) -> str:
    """The address of ``view`` given the search run's page (``#/experiments/<id>/runs/<run>?<query>``)."""
    run_page, _, query = link.partition("?")
    tail = VIEWS[view][1]
    page = run_page.rsplit("/", 1)[0] if tail is None else run_page + tail
    return f"{page}?{query}" if query else page


def photograph(folder: Path, shots: list[tuple[str, Path, int]], browser: str) -> None:
    """``shots``: (page, picture, window height) each, taken while one `mlflow ui` serves the folder's store."""
    port = _free_port()
    store = f"sqlite:///{folder}/mlflow.db"
    ui_command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store, "--port", str(port)]
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])  # mlflow ui runs uvicorn
    env = {**os.environ, "PATH": path, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no GenAI job runner
    ui = subprocess.Popen(ui_command, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        _wait(f"http://127.0.0.1:{port}/health")
        for page, out, height in shots:
            headless = [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--window-size=1440,{height}",
                # a new profile each time: the page as a newcomer first sees it, not as an earlier visit left it
                # (the UI keeps panels and charts in the browser's storage)
                f"--user-data-dir={tempfile.mkdtemp(prefix='profile-', dir=folder)}",
            ]
            shot = [
                browser,
                *headless,
                "--virtual-time-budget=20000",
                f"--screenshot={out}",
                f"http://127.0.0.1:{port}/{page}",
            ]
            subprocess.run(shot, check=True, capture_output=True, timeout=180)
            print(f"wrote {out} ({page})")
    finally:
        ui.terminate()
        ui.wait(timeout=30)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--view", choices=tuple(VIEWS), help="one picture (default: every picture the docs show)")
    parser.add_argument("--out", type=Path, help="where --view's picture goes (default: docs/ under its name)")
    parser.add_argument("--max-evals", type=int, default=12)
    args = parser.parse_args(argv)
    browser = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        print("no Chromium on PATH: apt-get install chromium (Debian), then run this again", file=sys.stderr)
        return 2
    views = [args.view] if args.view else [v for v in VIEWS if v != "runs"]
    with tempfile.TemporaryDirectory(prefix="hyperflow-screenshot-") as folder:
        link = search(Path(folder), args.max_evals)
        shots = [(page_of(link, v), (args.out or ROOT / "docs" / VIEWS[v][0]).resolve(), VIEWS[v][2]) for v in views]
        photograph(Path(folder), shots, browser)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
