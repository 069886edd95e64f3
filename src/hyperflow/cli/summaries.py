"""The few lines each command prints about its outcome (run, model, metrics, where to browse them), which users
read as the command line's own interface."""

from __future__ import annotations

from typing import Any

from hyperflow import names

UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default


def browse_line(experiment_id: str, run_id: str) -> str:
    """The link to a run in MLflow's UI: the tracking server's own, or the one `mlflow ui` serves for a local store,
    which opens only while it runs."""
    from hyperflow import tracking

    uri = tracking.tracking_uri()
    page = tracking.run_page(experiment_id, run_id)  # in the model-training view
    if uri.startswith(("http://", "https://")):
        return f"  open {uri.rstrip('/')}/{page}"
    return f"  open {UI}/{page} while `mlflow ui --backend-store-uri {uri}` runs (start it first)"


def train_summary(outcome: Any) -> str:
    from hyperflow import tracking

    r = outcome.result
    metrics = "  ".join(f"{k} {v:.4g}" for k, v in outcome.test_metrics.items())
    lines = [
        f"hyperflow train: {r.status} after {r.epochs_run} epochs in {r.seconds:.1f} s "
        f"(best epoch {r.best_epoch}, best_val_loss {r.best_val_loss:.4g})"
    ]
    if metrics:
        lines.append(f"  test: {metrics}")
    lines.append(f"  run {outcome.run_id} (experiment {outcome.experiment_id}) in {tracking.tracking_uri()}")
    if outcome.model_uri:
        lines.append(
            f"  model: {outcome.model_uri}"
            + (f" (registered version {outcome.registered_version})" if outcome.registered_version else "")
        )
    lines.append(browse_line(outcome.experiment_id, outcome.run_id))
    return "\n".join(lines)


def lr_find_summary(outcome: Any) -> str:
    from hyperflow import tracking

    f = outcome.finder
    lines = [
        f"hyperflow lr-find: suggested lr {f.suggested_lr_:.3g} ({f.suggestion}), range "
        f"{f.lr_range_[0]:.3g} – {f.lr_range_[1]:.3g}, status {f.status_}",
        f"  {f.status_}: {f.status_help_}",
        f"  sweep: {len(f.lrs_)} of {f.num_iter} mini-batches from {f.start_lr:g} to {f.lrs_[-1]:.3g}"
        + (" (stopped where the loss diverged)" if f.stopped_early_ else "")
        + (f"; {f.repeats} repeats, suggestions spread x{f.suggestion_spread_:.2f}" if f.repeats > 1 else ""),
        f"  next: hyperflow train lr={f.suggested_lr_:.3g}   or   hyperflow train schedule=onecycle "
        f"max_lr={f.lr_range_[1]:.3g}   or   lr=auto / max_lr=auto",
        f"  run {outcome.run_id} (experiment {outcome.experiment_id}) in {tracking.tracking_uri()}",
        browse_line(outcome.experiment_id, outcome.run_id),
    ]
    return "\n".join(lines)


def search_summary(outcome: Any, seconds: float) -> str:
    from hyperflow import tracking

    records = outcome.records
    counts = {s: sum(r.status == s for r in records) for s in names.TRIAL_STATUSES}
    unit = "steps" if outcome.objective else "epochs"
    budget = outcome.budget
    units = f"{outcome.units}{f' of budget={budget}' if budget else ''} {unit}"
    lines = [
        f"hyperflow search: {len(records)} trials ({counts[names.TRIAL_OK]} ok, {counts[names.TRIAL_PRUNED]} "
        f"pruned, {counts[names.TRIAL_FAILED]} failed; {outcome.at_once} at once) in {seconds:.0f} s, {units}; "
        f"stopped by {outcome.stop_reason}"
    ]
    best = outcome.best
    if best is None:
        lines.append(f"  no trial finished: see the failed trials' {names.TRIAL_REASON} tags")
    else:
        metrics = "  ".join(f"{k} {v:.4g}" for k, v in outcome.test_metrics.items())
        loss = "loss" if outcome.objective else "best_val_loss"
        lines.append(f"  best: trial {best.number} (run {best.run_id}) {loss} {best.loss:.4g}; {metrics}".rstrip("; "))
        lines.append(
            "  best params: "
            + " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.params.items())
        )
        if outcome.registered:
            lines.append(
                f"  model: registered {outcome.registered[0]} version {outcome.registered[1]}, alias challenger"
            )
        elif outcome.model_note:
            lines.append(f"  model: {outcome.model_note}")
        top = sorted((r for r in records if r.loss is not None), key=lambda r: r.loss)[:5]
        lines.append(f"  {'trial':>5}  {'status':<7} {loss.removeprefix('best_'):>9} {unit:>6}")
        lines += [f"  {r.number:>5}  {r.status:<7} {r.loss:>9.4g} {r.epochs:>6}" for r in top]
    lines.append(f"  run {outcome.run_id} (experiment {outcome.experiment_id}) in {tracking.tracking_uri()}")
    lines.append(browse_line(outcome.experiment_id, outcome.run_id))
    return "\n".join(lines)


def promotion_summary(o: Any) -> str:
    verdict = (
        "promoted to champion"
        if o.promoted
        else "passed (already the champion)"
        if o.already_champion
        else "passed (dry run: nothing moved)"
        if o.passed
        else "REJECTED by the gate"
    )
    lines = [
        f"hyperflow promote: {o.name} version {o.version} {verdict}; baseline: "
        + (f"champion version {o.baseline_version}" if o.baseline_version else "no champion"),
        f"  rows: {o.rows}",
    ]
    lines += [
        f"  {name}: candidate {value:.4g}" + (f", champion {o.champion[name]:.4g}" if o.champion else "")
        for name, value in o.candidate.items()
    ]
    lines += [f"  gate {c}" for c in o.checks] + [f"  note: {n}" for n in o.notes] + [f"  run {o.run_id}"]
    return "\n".join(lines)
