"""Command line: ``hyperflow <command> key=value ...`` (also ``--key value``). Exit codes: 0 done,
1 the job failed (e.g. training diverged), 2 bad input (one line on stderr, nothing half-written),
130 interrupted (Ctrl-C / SIGTERM; runs end KILLED)."""

from __future__ import annotations

import logging
import sys
from typing import Any, Sequence

from hyperflow.config import build_config, coerce, field_help, TrainConfig
from hyperflow.errors import UsageError

USAGE = """usage: hyperflow <command> [key=value ...]

commands:
  train     train one model and track it in MLflow (hyperflow train --help lists the settings)
  lr-find   LR range test: suggest a learning rate and a (min, max) range (same settings as train)
  search    hyperparameter search as nested MLflow runs (hyperflow search --help)
  promote   score a version against the champion on the same rows; move alias champion if it passes the gate
  retrain   scheduled retraining: newest data, the champion's settings, then the promotion gate (locked, idempotent)
  predict   batch scoring: hyperflow predict model=models:/<name>@champion data=new.csv out=preds.csv

Settings can also come from a YAML file: config=settings.yaml (command-line values win).
The tracking store is MLflow's default (sqlite:///mlflow.db here) unless MLFLOW_TRACKING_URI is set."""


def parse_settings(tokens: Sequence[str]) -> dict[str, str]:
    """``key=value``, ``--key=value`` and ``--key value`` into a dict (later values win)."""
    out: dict[str, str] = {}
    tokens = list(tokens)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        key, eq, value = token.lstrip("-").partition("=")
        if not eq:
            if token.startswith("--") and i + 1 < len(tokens):
                value, i = tokens[i + 1], i + 1
            else:
                raise UsageError(f"unexpected argument '{token}': pass settings as key=value, e.g. epochs=20")
        out[key.replace("-", "_")] = value
        i += 1
    return out


def drop_defaults(settings: dict[str, str]) -> dict[str, str]:
    """Under ``mlflow run`` every declared parameter arrives, given or not; values equal to the default
    are dropped so that a config file can set them (MLproject defaults equal the settings' defaults)."""
    from hyperflow.search.settings import SearchConfig

    kept = {}
    for key, value in settings.items():
        cls = SearchConfig if key in SearchConfig.__dataclass_fields__ else TrainConfig
        if key == "config" or key not in cls.__dataclass_fields__:
            kept[key] = value
        elif coerce(key, value, cls) != getattr(cls(), key):
            kept[key] = value
    return {k: v for k, v in kept.items() if not (k == "config" and v in ("", "''"))}


def train_help(command: str = "train") -> str:
    lines = [f"usage: hyperflow {command} [key=value ...] [config=settings.yaml]", "", "settings (default):"]
    for name, default, text in field_help():
        lines.append(f"  {name:<17} {text} ({default})")
    return "\n".join(lines)


def _summary(outcome: Any) -> str:
    import mlflow

    r = outcome.result
    metrics = "  ".join(f"{k} {v:.4g}" for k, v in outcome.test_metrics.items())
    lines = [f"hyperflow train: {r.status} after {r.epochs_run} epochs in {r.seconds:.1f} s "
             f"(best epoch {r.best_epoch}, best_val_loss {r.best_val_loss:.4g})"]
    if metrics:
        lines.append(f"  test: {metrics}")
    lines.append(f"  run {outcome.run_id} (experiment {outcome.experiment_id}) in {mlflow.get_tracking_uri()}")
    if outcome.model_uri:
        lines.append(f"  model: {outcome.model_uri}"
                     + (f" (registered version {outcome.registered_version})" if outcome.registered_version else ""))
    lines.append(f"  browse: mlflow ui --backend-store-uri {mlflow.get_tracking_uri()}  then open "
                 f"http://127.0.0.1:5000/#/experiments/{outcome.experiment_id}/runs/{outcome.run_id}")
    return "\n".join(lines)


def _train_config(settings: dict[str, str]) -> TrainConfig:
    """Settings plus an optional config=FILE, validated before the heavy imports: a typo fails at once."""
    config_file = settings.pop("config", None) or None
    return build_config(settings, config_file)


def cmd_train(settings: dict[str, str]) -> int:
    config = _train_config(settings)
    from hyperflow.workflows.train import TrainingDiverged, train

    try:
        outcome = train(config)
    except TrainingDiverged as exc:
        print(f"hyperflow train: diverged: {exc}", file=sys.stderr)
        return 1
    print(_summary(outcome))
    return 0


def lr_find_summary(outcome: Any) -> str:
    import mlflow

    f = outcome.finder
    lines = [f"hyperflow lr-find: suggested lr {f.suggested_lr_:.3g} ({f.suggestion}), range "
             f"{f.lr_range_[0]:.3g} – {f.lr_range_[1]:.3g}, status {f.status_}",
             f"  {f.status_}: {f.status_help_}",
             f"  sweep: {len(f.lrs_)} of {f.num_iter} mini-batches from {f.start_lr:g} to {f.lrs_[-1]:.3g}"
             + (" (stopped where the loss diverged)" if f.stopped_early_ else "")
             + (f"; {f.repeats} repeats, suggestions spread x{f.suggestion_spread_:.2f}" if f.repeats > 1 else ""),
             f"  next: hyperflow train lr={f.suggested_lr_:.3g}   or   hyperflow train schedule=onecycle "
             f"max_lr={f.lr_range_[1]:.3g}   or   lr=auto / max_lr=auto",
             f"  run {outcome.run_id} (experiment {outcome.experiment_id}) in {mlflow.get_tracking_uri()}"]
    return "\n".join(lines)


def cmd_lr_find(settings: dict[str, str]) -> int:
    config = _train_config(settings)
    from hyperflow.workflows.lr_find import lr_find

    outcome = lr_find(config)
    print(lr_find_summary(outcome))
    if outcome.finder.status_ != "ok":
        print(f"hyperflow lr-find: warning: status {outcome.finder.status_}: {outcome.finder.status_help_}",
              file=sys.stderr)
    return 0


def search_help() -> str:
    from hyperflow.search.settings import SearchConfig

    lines = ["usage: hyperflow search [search settings] [training settings] [config=settings.yaml]", "",
             "search settings (default):"]
    lines += [f"  {n:<25} {t} ({d})" for n, d, t in field_help(SearchConfig)]
    lines += ["", "every training setting (hyperflow train --help) sets the base of all trials; the space "
              "file says what varies."]
    return "\n".join(lines)


def search_summary(outcome: Any, seconds: float) -> str:
    import mlflow

    records = outcome.records
    counts = {s: sum(r.status == s for r in records) for s in ("ok", "pruned", "failed")}
    lines = [f"hyperflow search: {len(records)} trials ({counts['ok']} ok, {counts['pruned']} pruned, "
             f"{counts['failed']} failed) in {seconds:.0f} s; stopped by {outcome.stop_reason}"]
    best = outcome.best
    if best is None:
        lines.append("  no trial finished: see the failed trials' hyperflow.trial_reason tags")
    else:
        metrics = "  ".join(f"{k} {v:.4g}" for k, v in outcome.test_metrics.items())
        lines.append(f"  best: trial {best.number} (run {best.run_id}) best_val_loss {best.loss:.4g}; {metrics}")
        lines.append("  best params: " + " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                                  for k, v in best.params.items()))
        if outcome.registered:
            lines.append(f"  model: registered {outcome.registered[0]} version {outcome.registered[1]}, "
                         f"alias challenger")
        top = sorted((r for r in records if r.loss is not None), key=lambda r: r.loss)[:5]
        lines.append(f"  {'trial':>5}  {'status':<7} {'val_loss':>9} {'epochs':>6}")
        lines += [f"  {r.number:>5}  {r.status:<7} {r.loss:>9.4g} {r.epochs:>6}" for r in top]
    lines.append(f"  run {outcome.run_id} (experiment {outcome.experiment_id}) in {mlflow.get_tracking_uri()}; "
                 f"open http://127.0.0.1:5000/#/experiments/{outcome.experiment_id}/runs")
    return "\n".join(lines)


def cmd_search(settings: dict[str, str]) -> int:
    import time

    from hyperflow.config import load_yaml
    from hyperflow.search.settings import SEARCH_KEYS, build_search_config

    config_file = settings.pop("config", None) or None
    from_file = load_yaml(config_file) if config_file else {}
    merged = {**from_file, **settings}
    search_config = build_search_config({k: v for k, v in merged.items() if k in SEARCH_KEYS})
    base = build_config({k: v for k, v in merged.items() if k not in SEARCH_KEYS})
    from hyperflow.workflows.search import SearchRunner

    runner = SearchRunner(search_config, base)
    started = time.monotonic()
    try:
        outcome = runner.run()
    except KeyboardInterrupt:
        if runner.parent_id:
            print(f"hyperflow search: interrupted; runs ended as KILLED. Resume with: "
                  f"hyperflow search resume={runner.parent_id} (plus the same settings)", file=sys.stderr)
        raise
    print(search_summary(outcome, time.monotonic() - started))
    return 0 if outcome.best is not None else 1


def _with_file(settings: dict[str, str]) -> dict[str, Any]:
    from hyperflow.config import load_yaml

    config_file = settings.pop("config", None) or None
    return {**(load_yaml(config_file) if config_file else {}), **settings}


def _settings_help(command: str, cls: type, codes: str, extra: str = "") -> str:
    lines = [f"usage: hyperflow {command} [key=value ...] [config=settings.yaml]", "", "settings (default):"]
    lines += [f"  {n:<13} {t} ({d})" for n, d, t in field_help(cls) if n != "gate_rules"]
    return "\n".join(lines + ([extra] if extra else []) + ["", f"exit codes: {codes}"])


PROMOTE_CODES = ("0 passed (champion moved; or dry run; or already champion), 1 failed, 2 bad input, "
                 "3 rejected by the gate (alias unchanged), 5 the champion kept moving (nothing moved), 130 interrupted")
RETRAIN_CODES = ("0 promoted or skipped (same data and code already done), 1 failed, 2 bad input, 3 rejected "
                 "by the gate, 4 another retrain holds the lock (or took it over from this one), 5 the champion kept moving, "
                 "130 interrupted")


def promote_help() -> str:
    from hyperflow.workflows.promote import PromoteConfig

    return _settings_help("promote", PromoteConfig, PROMOTE_CODES)


def retrain_help() -> str:
    from hyperflow.workflows.retrain import RetrainConfig

    return _settings_help("retrain", RetrainConfig, RETRAIN_CODES,
                          "  any training setting (hyperflow train --help) overrides the champion's, e.g. epochs=50")


def promotion_summary(o: Any) -> str:
    verdict = ("promoted to champion" if o.promoted else "passed (already the champion)" if o.passed and o.notes
               else "passed (dry run: nothing moved)" if o.passed else "REJECTED by the gate")
    lines = [f"hyperflow promote: {o.name} version {o.version} {verdict}; baseline: "
             + (f"champion version {o.baseline_version}" if o.baseline_version else "no champion"),
             f"  rows: {o.rows}"]
    lines += [f"  {name}: candidate {value:.4g}" + (f", champion {o.champion[name]:.4g}" if o.champion else "")
              for name, value in o.candidate.items()]
    lines += [f"  gate {c}" for c in o.checks] + [f"  note: {n}" for n in o.notes] + [f"  run {o.run_id}"]
    return "\n".join(lines)


def cmd_promote(settings: dict[str, str]) -> int:
    from hyperflow.workflows.promote import ChampionConflict, build_promote_config, promote

    config = build_promote_config(_with_file(settings))
    try:
        outcome = promote(config)
    except ChampionConflict as exc:
        print(f"hyperflow promote: {exc}", file=sys.stderr)
        return exc.exit_code
    print(promotion_summary(outcome))
    return 0 if outcome.passed else 3


def cmd_retrain(settings: dict[str, str]) -> int:
    from hyperflow.workflows.lock import LockHeld
    from hyperflow.workflows.promote import ChampionConflict
    from hyperflow.workflows.retrain import build_retrain_config, retrain

    from hyperflow.workflows.train import TrainingDiverged

    config, overrides = build_retrain_config(_with_file(settings))
    try:
        outcome = retrain(config, overrides)
    except (LockHeld, ChampionConflict) as exc:
        print(f"hyperflow retrain: {exc}", file=sys.stderr)
        return exc.exit_code
    except TrainingDiverged as exc:
        print(f"hyperflow retrain: training diverged: {exc}; the champion stays", file=sys.stderr)
        return 1
    if outcome.outcome == "skipped":
        print(f"hyperflow retrain: skipped: retrain run {outcome.previous_run_id} already did data "
              f"{outcome.data} with this code (force=true to retrain); run {outcome.run_id}")
        return 0
    print(f"hyperflow retrain: {outcome.outcome}: version {outcome.version} trained on {outcome.data}; "
          f"run {outcome.run_id}")
    print(promotion_summary(outcome.promotion))
    return 0 if outcome.outcome == "promoted" else 3


def predict_help() -> str:
    return ("usage: hyperflow predict model=<model URI> data=<rows.csv|.parquet> [out=predictions.csv]\n\n"
            "  model   models:/<name>@champion, models:/<name>/<version> or runs:/<run id>/model\n"
            "  data    rows to score (raw columns, any order, missing values allowed)\n"
            "  out     output file (.csv or .parquet): the rows plus prediction (and probability_<class>) columns")


def cmd_predict(settings: dict[str, str]) -> int:
    from hyperflow.workflows.predict import predict_file

    unknown = set(settings) - {"model", "data", "out"}
    if unknown or not settings.get("model") or not settings.get("data"):
        raise UsageError("predict needs model=<URI> and data=<file> (and optionally out=<file>)"
                         + (f"; unknown: {', '.join(sorted(unknown))}" if unknown else ""))
    out = settings.get("out") or "predictions.csv"
    count = predict_file(settings["model"], settings["data"], out)
    print(f"hyperflow predict: {count} rows scored with {settings['model']} -> {out}")
    return 0


COMMANDS = {"train": (cmd_train, train_help), "lr-find": (cmd_lr_find, lambda: train_help("lr-find")),
            "search": (cmd_search, search_help), "promote": (cmd_promote, promote_help),
            "retrain": (cmd_retrain, retrain_help), "predict": (cmd_predict, predict_help)}


def main(argv: Sequence[str] | None = None, *, from_mlproject: bool = False) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] == "--version":
        from hyperflow import __version__

        print(f"hyperflow {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"hyperflow: error: unknown command '{command}': choose one of {', '.join(COMMANDS)}",
              file=sys.stderr)
        return 2
    run, helper = COMMANDS[command]
    if any(a in ("-h", "--help") for a in rest):
        print(helper())
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = parse_settings(rest)
        if from_mlproject:
            settings = drop_defaults(settings)
        return run(settings)
    except UsageError as exc:
        print(f"hyperflow: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"hyperflow {command}: interrupted; its runs were ended as KILLED", file=sys.stderr)
        return 130
