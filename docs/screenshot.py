"""Takes the README's picture of a search in MLflow's UI: runs a short search in a fresh folder, starts `mlflow ui`
on that store, and has a headless Chromium photograph the page the search's printed link opens.

    python docs/screenshot.py                     # writes docs/search_ui.png
    python docs/screenshot.py --out /tmp/x.png --max-evals 12 --view runs    # the experiment's runs table

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


def photograph(folder: Path, page: str, out: Path, browser: str) -> None:
    port = _free_port()
    store = f"sqlite:///{folder}/mlflow.db"
    ui_command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store, "--port", str(port)]
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])  # mlflow ui runs uvicorn
    ui = subprocess.Popen(
        ui_command, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PATH": path}
    )
    headless = ["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1440,900"]
    try:
        _wait(f"http://127.0.0.1:{port}/health")
        url = f"http://127.0.0.1:{port}/{page}"
        shot = [browser, *headless, "--virtual-time-budget=20000", f"--screenshot={out}", url]
        subprocess.run(shot, check=True, capture_output=True, timeout=180)
    finally:
        ui.terminate()
        ui.wait(timeout=30)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "search_ui.png")
    parser.add_argument("--max-evals", type=int, default=12)
    parser.add_argument(
        "--view", choices=("run", "runs"), default="run", help="the search run's page, or the experiment's runs table"
    )
    args = parser.parse_args(argv)
    browser = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        print("no Chromium on PATH: apt-get install chromium (Debian), then run this again", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="hyperflow-screenshot-") as folder:
        page = search(Path(folder), args.max_evals)
        page = page if args.view == "run" else page.rsplit("/", 1)[0]
        photograph(Path(folder), page, args.out.resolve(), browser)
    print(f"wrote {args.out} ({page})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
