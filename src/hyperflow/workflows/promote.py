"""The ``promote`` workflow: score a candidate version and the champion on the same rows, apply the gate,
and move alias ``champion`` to that exact version when it passes.

Fails closed: the champion is looked up before any run is written, and only a true "not found" means
"no champion"; any other registry error stops the promotion (RegistryError, exit 2) with nothing moved.
A first promotion (no champion) needs an absolute threshold in the gate or ``allow_first=true``: a gate
without a single check never passes. A candidate whose task, target or input columns differ from the
champion's is refused. Just before the move the champion is read again; if someone moved it meanwhile,
the candidate is scored against the new champion (up to ``max_attempts`` times) instead of overwriting it.

MLflow has no compare-and-set on aliases, so two promotions can still move it in the same moment. What is
written around the move stays true: the alias is read back ``settle`` seconds after the move (as the retrain
lock reads its tag back), and a promotion whose version is not the champion then has lost the race: its run
and the version's record say so, and ChampionConflict (exit 5) says who won. A version that is already the
champion (before, or by another promotion meanwhile) gets nothing written to it: only the run records that.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from hyperflow import names, tracking
from hyperflow.config import GATE_HELP, PromoteConfig, build_promote_config  # noqa: F401 (re-exported)
from hyperflow.errors import ChampionConflict
from hyperflow.tracking import artifacts, registry
from hyperflow.tracking.held_signals import HeldSignals
from hyperflow.tracking.registry import CHAMPION, Client, alias_version
from hyperflow.tracking.registry_writes import move_alias
from hyperflow.workflows.gate import check_replaceable
from hyperflow.workflows.promotion_checks import Prepared, prepare_promotion
from hyperflow.workflows.promotion_record import PromoteOutcome, tag_version
from hyperflow.workflows.scoring import score

MOVE_SETTLE_S = 1.0  # from the move to the read-back: a move made in the same moment lands within it


def promote(
    config: PromoteConfig,
    *,
    parent_run_id: str | None = None,
    before_move: Callable[[], None] | None = None,
    settle: float = MOVE_SETTLE_S,
) -> PromoteOutcome:
    """Score, gate, log a ``promote`` run and (unless dry run or failed) move ``champion``.
    ``before_move`` runs after the decision and before the champion is re-read (a lock check, or a test);
    ``settle`` seconds after the move the champion is read back. A lost race raises ChampionConflict once the
    run has ended (recorded)."""
    client = registry.default_client()
    p = prepare_promotion(config, client)
    if parent_run_id is None:  # gate.json must be writable before an alias moves (a retrain checked already)
        artifacts.check_writable(config.experiment)
    candidate = score(tracking.load_version(p.name, p.version), p.rows)
    held = HeldSignals("moving the champion alias")  # lock check and move to the run's end: no KILLED run moves it
    try:
        outcome = _promote_run(config, client, p, candidate, parent_run_id, before_move, held, settle)
    except BaseException:
        held.release(failed=True)
        raise
    held.release()
    if outcome.lost:
        raise ChampionConflict(outcome.lost_message())
    return outcome


def _move(client: Client, p: Prepared, settle: float) -> str | None:
    """Move the champion to the candidate; the champion read back ``settle`` seconds later."""
    move_alias(client, p.name, CHAMPION, p.version)
    time.sleep(settle)
    return alias_version(client, p.name, CHAMPION)


def _promote_run(
    config: PromoteConfig,
    client: Client,
    p: Prepared,
    candidate: dict[str, float],
    parent_run_id: str | None,
    before_move: Callable[[], None] | None,
    held: HeldSignals,
    settle: float,
) -> PromoteOutcome:
    with tracking.tracked_run(
        names.ROLE_PROMOTE,
        experiment=config.experiment,
        parent_run_id=parent_run_id,
        run_name=tracking.unique_run_name(names.ROLE_PROMOTE, f"{p.name}-v{p.version}"),
        tags={names.MODEL_NAME: p.name, names.CANDIDATE_VERSION: p.version},
    ) as run:
        run_id = run.info.run_id
        tracking.log_params(
            run_id,
            {
                "model_name": p.name,
                "version": p.version,
                "eval_rows": p.rows.source,
                "gate": str(p.gate.to_dict()),
                "dry_run": str(config.dry_run),
                "allow_first": str(config.allow_first),
            },
        )
        tracking.log_metrics({f"{names.CANDIDATE_PREFIX}{k}": v for k, v in candidate.items()})
        outcome = _decide(config, client, p, candidate, run_id, before_move, held, settle)
        if outcome.champion:
            tracking.log_metrics({f"{names.CHAMPION_PREFIX}{k}": v for k, v in outcome.champion.items()})
        tracking.set_tags(
            {
                names.DECISION: names.PASSED if outcome.passed else names.FAILED,
                names.PROMOTED: str(outcome.promoted).lower(),
                names.PROMOTE_BASELINE_VERSION: outcome.baseline_version or "none",
            }
        )
        tracking.log_dict(
            {
                "gate": p.gate.to_dict(),
                "checks": [_json_safe(vars(c)) for c in outcome.checks],
                "passed": outcome.passed,
                "promoted": outcome.promoted,
                "notes": outcome.notes,
            },
            "gate.json",
        )
        if not config.dry_run and not outcome.already_champion:  # a no-op writes nothing to the version
            tag_version(client, outcome)
    return outcome


def _json_safe(values: dict[str, Any]) -> dict[str, Any]:
    """Non-finite numbers as text ("inf"): JSON has no Infinity (a relative change against a champion at 0)."""
    return {k: str(v) if isinstance(v, float) and not math.isfinite(v) else v for k, v in values.items()}


def _decide(
    config: PromoteConfig,
    client: Client,
    p: Prepared,
    candidate: dict[str, float],
    run_id: str,
    before_move: Callable[[], None] | None,
    held: HeldSignals,
    settle: float,
) -> PromoteOutcome:
    baseline, compared = p.baseline, p.baseline
    for _ in range(config.max_attempts):
        same = baseline == p.version
        if baseline is not None and not same and baseline != compared:  # a new champion: the same guard
            check_replaceable(client, p.mv, baseline, p.train_config)
            compared = baseline
        champion = score(tracking.load_version(p.name, baseline), p.rows) if baseline and not same else None
        checks = p.gate.check(candidate, champion)
        unchecked = not checks and not same  # no champion and no absolute threshold
        passed = all(c.passed for c in checks) and (not unchecked or config.allow_first)
        outcome = PromoteOutcome(
            run_id,
            p.name,
            p.version,
            passed,
            False,
            None if same else baseline,
            checks,
            candidate,
            champion,
            p.rows.source,
            already_champion=same,
        )
        if same:
            outcome.notes.append(
                f"version {p.version} is already the champion"
                + ("" if p.baseline == p.version else " (another promotion moved it there meanwhile)")
                + ": nothing was written to the version"
            )
        elif unchecked:
            outcome.notes.append(
                "no champion and no absolute threshold: nothing was checked; "
                + (
                    "allow_first=true lets it pass"
                    if config.allow_first
                    else "refused (add a threshold or allow_first=true)"
                )
            )
        if not outcome.passed or config.dry_run or same:
            return outcome
        held.hold()  # the lock check, the re-read and the move, then the run's end
        if before_move is not None:
            before_move()
        now = alias_version(client, p.name, CHAMPION)  # re-read just before the move (fails closed)
        if now == baseline:
            outcome.moved, outcome.champion_after = True, _move(client, p, settle)
            outcome.promoted = outcome.champion_after == p.version
            if not outcome.promoted:  # another promotion moved it on right after: it won
                tracking.set_tag(names.CHAMPION_CHANGED, f"{p.version} -> {outcome.champion_after}")
                outcome.notes.append(outcome.lost_message())
            return outcome
        tracking.set_tag(names.CHAMPION_CHANGED, f"{baseline} -> {now}")
        baseline = now
    raise ChampionConflict(
        f"the champion of '{p.name}' moved during each of {config.max_attempts} attempts "
        f"(now version {baseline}); nothing was moved: run promote again"
    )
