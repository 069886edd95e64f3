"""Every ``hyperflow ...`` and ``mlflow run ...`` command line in README.md and docs/*.md runs as written: its
command or entry point exists, and each setting (``key=value``, ``-P key=value``) is one that command takes, with a
value it accepts (a choice it offers, a number in range). Placeholders (``<run id>``, ``$VAR``, ``...``) are not
checked as values. docs/history/ is a journal of what was, and is left as it was written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from hyperflow.cli.parsing import CONFIGS, command_name, invocation_of, parse_settings
from hyperflow.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
MLPROJECT = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]
ENV_MANAGERS = ("local", "uv", "virtualenv", "conda")
MLFLOW_RUN_OPTIONS = {"-e": "entry point", "--entry-point": "entry point", "--env-manager": "env", "-P": "param"}
MLFLOW_RUN_FREE_OPTIONS = ("--experiment-name", "--experiment-id", "--run-name", "--run-id", "-A", "--backend")
START = re.compile(r"(?:^|(?<=[\s`(]))(hyperflow [a-z<]|mlflow run )")
PLACEHOLDER = re.compile(r"<[^>]*>|\$|…|\.\.\.")


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _command_text(text: str) -> str | None:
    """The command line that starts in ``text`` (a code line or an inline code span), up to a comment, a redirection
    or the next command of a shell line."""
    match = START.search(text)
    if not match:
        return None
    rest = text[match.start(1) :]
    return re.split(r"\s+#|\s&&|\s\|\s|;|`|\s[12]?>", rest)[0].strip()


def commands_in(text: str) -> list[tuple[int, str]]:
    """(line number, command) of each command line: in fenced code blocks (a line, joined with the lines its
    trailing backslash continues) and in inline code spans of the prose."""
    found: list[tuple[int, str]] = []
    lines = text.splitlines()
    fence = None
    i = 0
    while i < len(lines):
        line, number = lines[i], i + 1
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else stripped[3:].strip()
        elif fence in ("bash", "sh", "shell", "console", ""):  # not text: a command's output
            while line.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                line = line.rstrip()[:-1].rstrip() + " " + lines[i].strip()
            command = _command_text(line.strip().removeprefix("$ "))
            if command:
                found.append((number, command))
        elif fence is None:
            for span in re.findall(r"`([^`]+)`", line):
                command = _command_text(span) if span.startswith(("hyperflow ", "mlflow run ")) else None
                if command:
                    found.append((number, command))
        i += 1
    return found


# Settings a command cannot do without, where the docs leave them to the reader (<name>, $VAR)
STAND_INS = {"promote": {"model_name": "m"}, "retrain": {"model_name": "m"}, "predict": {"model": "m", "data": "d"}}


def _settings_problems(command: str, tokens: list[str]) -> list[str]:
    """The settings as the command reads them (hyperflow.cli.parsing.configure: known keys, types, choices,
    ranges, the rules between settings), placeholders and config files left out."""
    tokens = [t for t in tokens if not PLACEHOLDER.fullmatch(t) and t != "--help"]
    try:
        settings = parse_settings(tokens)
    except UsageError as exc:
        return [str(exc)]
    given = {k: v for k, v in settings.items() if k != "config" and not PLACEHOLDER.search(v)}
    try:
        invocation_of(command, {**STAND_INS.get(command, {}), **given})
    except UsageError as exc:
        return [str(exc)]
    return []


def hyperflow_problems(tokens: list[str]) -> list[str]:
    word = tokens[1] if len(tokens) > 1 else ""
    if PLACEHOLDER.search(word) or word == "--help":
        return []
    command = command_name(word)
    if command is None:
        return [f"unknown command '{word}': hyperflow has {', '.join(CONFIGS)}"]
    return _settings_problems(command, tokens[2:])


def mlflow_run_problems(tokens: list[str]) -> list[str]:
    problems, params, entry = [], [], "main"
    rest = tokens[2:]
    if not rest or (rest[0] != "." and not PLACEHOLDER.search(rest[0])):
        problems.append("the project is '.', the folder the command runs in")
    i = 1
    while i < len(rest):
        option, value = rest[i], rest[i + 1] if i + 1 < len(rest) else ""
        what = MLFLOW_RUN_OPTIONS.get(option)
        if what == "entry point":
            entry = value
        elif what == "env" and value not in ENV_MANAGERS:
            problems.append(f"--env-manager '{value}': MLflow has {', '.join(ENV_MANAGERS)}")
        elif what == "param":
            params.append(value)
        elif what is None and option not in MLFLOW_RUN_FREE_OPTIONS:
            problems.append(f"unknown option '{option}' of mlflow run")
            i -= 1
        i += 2
    if PLACEHOLDER.search(entry):
        return problems
    if entry not in MLPROJECT:
        return [*problems, f"unknown entry point '{entry}': MLproject has {', '.join(MLPROJECT)}"]
    declared = MLPROJECT[entry]["parameters"]
    for param in params:
        key = param.partition("=")[0]
        if key not in declared:
            problems.append(f"entry point {entry} has no parameter '{key}' (MLproject: {', '.join(declared)})")
    command = "search" if entry == "main" else command_name(entry)
    known = [p for p in params if p.partition("=")[0] in declared]
    return problems + _settings_problems(command, known)


def problems_of(command: str) -> list[str]:
    try:
        tokens = shlex.split(re.sub(r"<[^>]*>", "<placeholder>", command))
    except ValueError as exc:
        return [f"cannot be split as a shell would: {exc}"]
    return hyperflow_problems(tokens) if tokens[0] == "hyperflow" else mlflow_run_problems(tokens)


def doc_problems(name: str, text: str) -> list[str]:
    return [
        f"{name}:{number}: {command}: {problem}"
        for number, command in commands_in(text)
        for problem in problems_of(command)
    ]


def test_every_command_line_in_the_docs_runs_as_written():
    problems, count = [], 0
    for path in doc_files():
        text = path.read_text()
        count += len(commands_in(text))
        problems += doc_problems(path.relative_to(ROOT).as_posix(), text)
    assert not problems, "\n".join(problems)
    assert count > 50  # the collector finds them: README's and every page's


def test_the_collector_finds_commands_in_code_blocks_and_in_prose():
    text = (
        "Run `hyperflow train epochs=5` or:\n\n```bash\nUV_X=1 mlflow run . -e search -P max_evals=3  # note\n"
        "python3 -m venv .venv && pip install -e . && mlflow run . -e train --env-manager local\n"
        "hyperflow search \\\n  max_evals=4\n```\n\n```python\nhyperflow.search(fn)\n```\n"
    )
    assert commands_in(text) == [
        (1, "hyperflow train epochs=5"),
        (4, "mlflow run . -e search -P max_evals=3"),
        (5, "mlflow run . -e train --env-manager local"),
        (6, "hyperflow search max_evals=4"),
    ]


def test_unknown_commands_entry_points_settings_and_values_fail_naming_the_file_and_line():
    text = "\n".join(
        [
            "```bash",
            "hyperflow serch max_evals=3",
            "hyperflow search stratgy=tpe",
            "hyperflow search pruner=sometimes",
            "hyperflow search max_evals=0",
            "mlflow run . -e tune --env-manager local",
            "mlflow run . -e search --env-manager pip -P epochs=3",
            "hyperflow search resume=<search run id> max_evals=60",
            "hyperflow promote model_name=m gate.accuracy.threshold=0.9",
            "```",
        ]
    )
    problems = doc_problems("docs/x.md", text)
    assert problems[0].startswith("docs/x.md:2: hyperflow serch max_evals=3: unknown command 'serch'")
    assert problems[1].startswith("docs/x.md:3: hyperflow search stratgy=tpe: unknown setting 'stratgy'")
    assert "did you mean 'strategy'" in problems[1]
    assert problems[2].startswith("docs/x.md:4: ") and "pruner" in problems[2] and "sometimes" in problems[2]
    assert problems[3].startswith("docs/x.md:5: ") and "max_evals" in problems[3]
    assert problems[4] == "docs/x.md:6: mlflow run . -e tune --env-manager local: unknown entry point 'tune': " + (
        "MLproject has " + ", ".join(MLPROJECT)
    )
    assert problems[5].startswith("docs/x.md:7: ") and "--env-manager 'pip'" in problems[5]
    assert problems[6].startswith("docs/x.md:7: ") and "entry point search has no parameter 'epochs'" in problems[6]
    assert len(problems) == 7  # placeholders and gate rules pass
