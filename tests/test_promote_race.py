"""Two promotions at once leave a true record. MLflow has no compare-and-set on aliases: two real
``hyperflow promote`` processes meet at a barrier just before each moves the champion (both have read the old
one), so their moves land in the same moment, every time. Whoever the champion is afterwards says so, the other
says it lost (one line, exit 5), and nothing either wrote is lost or untrue. A version that is already the
champion gets nothing written to it."""

import os
import subprocess
import sys
from pathlib import Path

import forked
import mlflow
import pytest
from tiny_model import copies, register_tiny

from hyperflow.cli import main
from hyperflow.tracking import registry, registry_writes

PAUSED = str(Path(__file__).with_name("paused_command.py"))
ROUNDS = 2


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> str:
    return register_tiny(tmp_path_factory.mktemp("race"))


def start_together(name: str, versions: list[str], folder: Path, experiment: str) -> list[subprocess.Popen]:
    """One ``hyperflow promote`` per version, meeting before the move."""
    folder.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")}
    env.update(PAUSE_AT="move", PAUSE_COUNT=str(len(versions)), PAUSE_DIR=str(folder))
    return [
        forked.Popen(
            [sys.executable, PAUSED, "promote", f"model_name={name}", f"version={v}", f"experiment={experiment}"],
            env=env,
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for v in versions
    ]


def finish(procs: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    outputs = [proc.communicate(timeout=600) for proc in procs]
    done = [(proc.returncode, out, err.strip()) for proc, (out, err) in zip(procs, outputs)]
    assert not any("Traceback" in err for _, _, err in done), "\n".join(err for _, _, err in done)
    return done


def promote_run(experiment: str, name: str, version: str):
    (run,) = mlflow.search_runs(
        experiment_names=[experiment],
        output_format="list",
        filter_string=f"tags.`hyperflow.model_name` = '{name}' and tags.`hyperflow.candidate_version` = '{version}'",
    )
    assert run.info.status == "FINISHED" and run.data.tags["hyperflow.decision"] == "passed"
    return run


@pytest.mark.integration  # real processes, one or two pairs at once
def test_two_promotions_of_two_versions_at_once_one_wins_and_the_other_says_it_lost(base, tmp_path, client, experiment):
    rounds = []
    for i in range(ROUNDS):  # every round's pair at once: the barrier makes each pair's moves meet
        name, (old, a, b) = copies(base, 3)
        rounds.append((name, old, a, b, start_together(name, [a, b], tmp_path / f"round{i}", experiment)))
    for name, old, a, b, procs in rounds:
        results = dict(zip((a, b), finish(procs)))
        winner = registry.alias_version(client, name, "champion")
        loser = b if winner == a else a
        assert winner in (a, b) and results[winner][0] == 0 and "promoted to champion" in results[winner][1]
        code, out, err = results[loser]
        assert code == 5 and out == "" and len(err.splitlines()) == 1, err
        assert f"version {loser} of '{name}' passed the gate and was moved to champion" in err
        assert f"version {winner} is the champion now" in err
        won, lost = promote_run(experiment, name, winner), promote_run(experiment, name, loser)
        assert won.data.tags["hyperflow.promoted"] == "true" and lost.data.tags["hyperflow.promoted"] == "false"
        assert lost.data.tags["hyperflow.champion_changed"] == f"{loser} -> {winner}"
        for version, run, said in [(winner, won, "promoted to champion"), (loser, lost, "replaced at once")]:
            mv = client.get_model_version(name, version)
            assert mv.tags["validation_status"] == "passed" and mv.tags["baseline_version"] == old
            assert mv.tags["promote_run_id"] == run.info.run_id
            (line,) = mv.description.splitlines()
            assert said in line and run.info.run_id in line


@pytest.mark.integration  # real processes, one or two pairs at once
def test_two_promotions_of_one_version_at_once_keep_both_lines(base, tmp_path, client, experiment):
    rounds = []
    for i in range(ROUNDS - 1):
        name, (old, new) = copies(base, 2)
        rounds.append((name, old, new, start_together(name, [new, new], tmp_path / f"round{i}", experiment)))
    for name, old, new, procs in rounds:
        assert [code for code, _, _ in finish(procs)] == [0, 0]  # both moved it, and it is theirs
        assert registry.alias_version(client, name, "champion") == new
        runs = mlflow.search_runs(
            experiment_names=[experiment], output_format="list", filter_string=f"tags.`hyperflow.model_name` = '{name}'"
        )
        assert sorted(r.data.tags["hyperflow.promoted"] for r in runs) == ["true", "true"]
        mv = client.get_model_version(name, new)
        lines = mv.description.splitlines()
        assert len(lines) == 2 and all(any(r.info.run_id in line for line in lines) for r in runs)
        assert mv.tags["promote_run_id"] in {r.info.run_id for r in runs} and mv.tags["baseline_version"] == old


@pytest.mark.integration
def test_promoting_the_champion_again_writes_nothing_to_the_version(base, client, experiment, capsys):
    name, (first,) = copies(base, 1, champion=False)
    assert main(["promote", f"model_name={name}", f"version={first}", "allow_first=true"]) == 0
    before = client.get_model_version(name, first)
    assert main(["promote", f"model_name={name}", f"version={first}"]) == 0
    assert "passed (already the champion)" in capsys.readouterr().out
    after = client.get_model_version(name, first)
    assert (after.tags, after.description) == (before.tags, before.description)
    assert after.last_updated_timestamp == before.last_updated_timestamp
    assert len(mlflow.search_runs(experiment_names=[experiment], output_format="list")) == 2  # the run says so


def test_a_line_appended_at_the_same_moment_is_not_lost(base, client):
    """Another job appends its line between this one's read and write of the description: both lines stay."""
    name, (version,) = copies(base, 1, champion=False)
    client.update_model_version(name, version, description="trained on items.csv")

    class Interleaved(mlflow.MlflowClient):
        other_done = False

        def get_model_version(self, *args):
            found = super().get_model_version(*args)
            if not self.other_done:  # the other job's whole append lands after this read
                self.other_done = True
                registry_writes.add_to_description(client, name, version, "their line", "promotion.", "run-b")
            return found

    registry_writes.add_to_description(Interleaved(), name, version, "our line", "promotion.", "run-a")
    mv = client.get_model_version(name, version)
    first, *lines = mv.description.splitlines()  # ours overwrote theirs, then its read-back put theirs back
    assert first == "trained on items.csv" and sorted(lines) == ["our line", "their line"]
    assert {k: v for k, v in mv.tags.items() if k.startswith("promotion.")} == {
        "promotion.run-a": "our line",
        "promotion.run-b": "their line",
    }
