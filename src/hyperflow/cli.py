"""Command line: ``hyperflow <command> key=value ...`` (also ``--key value``). Exit codes: 0 done,
1 the job failed (e.g. training diverged), 2 bad input (one line on stderr, nothing half-written),
130 interrupted (Ctrl-C / SIGTERM; runs end KILLED).

Longer than ~300 lines on purpose: besides argv → config → one workflow → exit code (the first third),
it holds each command's help text and the few lines it prints about the outcome, which users read as
the CLI's own interface; they share the command table, and the import-linter layers contract keeps the
CLI one top-level module. No logic of a workflow lives here, and MLflow is reached through tracking.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from hyperflow import names
from hyperflow.config import (
    PromoteConfig,
    RetrainConfig,
    TrainConfig,
    build_config,
    build_promote_config,
    build_retrain_config,
    coerce,
    field_defaults,
    load_yaml,
    unknown_setting,
)
from hyperflow.config.help import settings_lines
from hyperflow.config.search import SEARCH_KEYS, SearchConfig, build_search_config
from hyperflow.config.train import DATA_SETTINGS
from hyperflow.errors import UsageError, without_credentials
from hyperflow.runtime import library_logs, signals, startup
from hyperflow.runtime.streams import TolerantStream

USAGE = """usage: hyperflow <command> [key=value ...]

commands:
  train     train one model and track it in MLflow (hyperflow train --help lists the settings)
  lr-find   LR range test: suggest a learning rate and a (min, max) range (same settings as train; also lr_find)
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


# The config classes whose settings each command takes, in the order a key is looked up.
CONFIGS: dict[str, tuple[type, ...]] = {
    "train": (TrainConfig,),
    "lr-find": (TrainConfig,),
    "search": (SearchConfig, TrainConfig),
    "promote": (PromoteConfig,),
    "retrain": (RetrainConfig, TrainConfig),
    "predict": (),
}
# Whose defaults an MLproject parameter left at its default is compared with. retrain's training settings
# override the champion's, so no default stands for "unset" there: they are never dropped.
DEFAULTS_OF: dict[str, tuple[type, ...]] = {**CONFIGS, "retrain": (RetrainConfig,)}


def command_name(word: str) -> str | None:
    """The command a word names: ``lr_find`` and ``lr-find`` (any ``_``/``-`` spelling) alike."""
    name = word.replace("_", "-")
    return name if name in COMMANDS else None


def drop_defaults(command: str, settings: dict[str, str]) -> dict[str, str]:
    """Under ``mlflow run`` every declared parameter arrives, given or not; values equal to the default of
    the entry point's OWN config are dropped so that a config file can set them (MLproject defaults equal
    those defaults, tests/test_project.py checks it)."""
    kept = {}
    for key, value in settings.items():
        cls = next((c for c in DEFAULTS_OF[command] if key in c.__dataclass_fields__), None)
        if value in ("", "''") and cls is not None and field_defaults(cls)[key] is None:
            continue  # a parameter left at its empty default: unset (an empty value given by hand is refused)
        if key == "config" or cls is None or coerce(key, value, cls) != field_defaults(cls)[key]:
            kept[key] = value
    return {k: v for k, v in kept.items() if not (k == "config" and v in ("", "''"))}


@dataclass
class Invocation:
    """A command line resolved into the config objects its workflow takes (nothing run, nothing read
    from MLflow): ``parse`` builds it, the ``cmd_*`` functions run it."""

    command: str
    train: TrainConfig | None = None
    search: SearchConfig | None = None
    promote: PromoteConfig | None = None
    retrain: RetrainConfig | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # retrain: training settings over the champion's
    predict: dict[str, Any] = field(default_factory=dict)
    given: frozenset[str] = frozenset()  # the settings the user set (command line, config file): a resume
    # takes every other one from the search it continues

    @property
    def experiment(self) -> str | None:
        own = self.promote or self.retrain or self.train
        return getattr(own, "experiment", None)


def _predict_keys() -> set[str]:
    from hyperflow.workflows.predict import predict_file

    return set(inspect.signature(predict_file).parameters)


def known_keys(command: str) -> set[str]:
    keys = {f for cls in CONFIGS[command] for f in cls.__dataclass_fields__}
    return keys | _predict_keys() if command == "predict" else keys


def check_keys(command: str, settings: dict[str, Any]) -> None:
    """Refuse a setting no config of this command has, suggesting the closest setting of THIS command."""
    known = known_keys(command)
    for key in settings:
        if key not in known and not (command in ("promote", "retrain") and key.startswith("gate.")):
            raise unknown_setting(key, known, command)


def configure(command: str, settings: dict[str, Any]) -> Invocation:
    """Settings (``config=FILE`` included; command-line values win over the file) → config objects. The one
    place a config file is merged: every command's configs are built from ``merged``."""
    settings = dict(settings)
    config_file = settings.pop("config", None) or None
    from_file = load_yaml(config_file) if config_file else {}
    merged = {**from_file, **settings}
    check_keys(command, merged)
    if command in ("train", "lr-find"):
        return Invocation(command, train=build_config(merged))
    if command == "search":
        return Invocation(
            command,
            given=frozenset(merged),
            search=build_search_config({k: v for k, v in merged.items() if k in SEARCH_KEYS}),
            train=build_config({k: v for k, v in merged.items() if k not in SEARCH_KEYS}),
        )
    if command == "promote":
        return Invocation(command, promote=build_promote_config(merged))
    if command == "retrain":
        config, overrides = build_retrain_config(merged)
        return Invocation(command, retrain=config, overrides=overrides)
    if not merged.get("model") or not merged.get("data"):
        raise UsageError("predict needs model=<URI> and data=<file> (and optionally out=<file>)")
    return Invocation(command, predict={"out": "predictions.csv", **merged})


def parse(argv: Sequence[str], *, from_mlproject: bool = False) -> Invocation:
    """``[command, key=value, ...]`` → an Invocation: what ``main`` and every MLproject step run."""
    if not argv or command_name(argv[0]) is None:
        raise UsageError(f"unknown command '{argv[0] if argv else ''}': choose one of {', '.join(COMMANDS)}")
    command = command_name(argv[0])
    settings = parse_settings(argv[1:])
    if from_mlproject:
        settings = drop_defaults(command, settings)
    return configure(command, settings)


def check_data(inv: Invocation) -> None:
    """Every mistake that needs only a file, the space or the store is reported before torch is imported and
    before a worker starts (seconds): ``data=``, ``target=``, ``task=``, ``model=package.module:function``, and
    for a search its space file and the run ``resume=`` names (read from the store: MLflow, not torch)."""
    if inv.command not in ("train", "lr-find", "search") or inv.train is None:
        return
    base = inv.train
    if inv.search is not None:
        base = check_search(inv.search, base, inv.given)
    from hyperflow.core.data import precheck_source

    precheck_source(base.data, base.target, base.task)
    if ":" in base.model:
        from hyperflow.core.factory import import_factory

        import_factory(base.model)


def check_search(search: SearchConfig, base: TrainConfig, given: Collection[str]) -> TrainConfig:
    """The run ``resume=`` names (and the settings it keeps) and the space file, before anything heavy; the
    training settings the search will run with."""
    from hyperflow.search import space

    if search.resume:
        from hyperflow.search import resume

        search, base, _ = resume.recorded_settings(resume.search_run(search.resume), search, base, given)
    space.check_auto_lrs(base)
    if search.space:
        space.check_space_file(search.space, base, grid=search.strategy == "grid")
    return base


def check_start(inv: Invocation) -> None:
    """Every check made before a command works, cheapest first: the files it reads (no MLflow, no torch), its
    tracking store, then the experiment its runs go to; a search's ``resume=`` run is read from the store, so
    there the store comes first."""
    store_first = inv.search is not None and bool(inv.search.resume)
    if store_first:
        check_store(inv)
    check_data(inv)
    if not store_first:
        check_store(inv)
    if inv.command != "predict":
        check_experiment(inv.experiment)


def check_store(inv: Invocation) -> None:
    """The start-up checks of the tracking store, together and before anything reads it (seconds, no torch):
    its URI (a scheme MLflow has no store for, a sqlite file that is a folder or in a folder that does not
    exist, a schema revision this MLflow does not know or has moved past; promote, retrain and predict of a
    models:/ or runs:/ URI only read, so a store that does not exist yet is refused too). One line, exit 2."""
    model = str(inv.predict.get("model", ""))
    if inv.command == "predict" and not model.startswith(("models:/", "runs:/")):
        return  # a model folder or file URI: no store is read
    from hyperflow.tracking import new_store

    new_store.check(reads_only=inv.command in ("promote", "retrain", "predict"))


def check_experiment(name: str | None) -> None:
    """Refuse a deleted experiment, or an ``MLFLOW_EXPERIMENT_ID`` that names none, before any run is created
    (MLflow would raise deep inside)."""
    if os.environ.get("MLFLOW_RUN_ID"):  # under `mlflow run`: the run, and its experiment, exist already
        return
    name = name or os.environ.get("MLFLOW_EXPERIMENT_NAME")
    experiment_id = os.environ.get("MLFLOW_EXPERIMENT_ID", "").strip()
    if not (name or experiment_id):
        return
    from hyperflow import tracking
    from hyperflow.tracking import new_store

    new_store.prepare()  # a store to be made is made from the cached empty one, as the command would
    if not name:
        tracking.check_experiment_id(experiment_id)
        return

    try:
        state = tracking.experiment_state(name)
    except Exception as exc:
        if tracking.is_store_error(exc, os_errors=False):
            raise  # the one line and the command's code for a store that fails (_store_refusal)
        raise tracking.registry_error(exc, f"reading experiment '{name}'", store="tracking store") from None
    if state is not None and state[0] == "deleted":
        raise tracking.deleted_experiment(name, state[1])


def _tracking() -> Any:
    """hyperflow.tracking where the command imported it (it reached a store), else None: MLflow's import is not
    paid to learn that no run was started."""
    return sys.modules.get("hyperflow.tracking")


def _runs_ended() -> str:
    """How an interrupt left the command's runs: ended KILLED, unless the store refused to end one."""
    tracking = _tracking()
    return tracking.interrupted_runs() if tracking is not None else "its runs were ended as KILLED"


# A store that fails: 1 (the job failed), as for a search; promote and retrain say 2, as when their registry
# cannot be read (README's table). The line names the store and what was written.
STORE_FAILURE_CODES = {"promote": 2, "retrain": 2}


def _store_refusal(exc: BaseException, command: str) -> tuple[str, int] | None:
    """The one line and exit code for a store that refused or failed under the command: a schema revision to
    upgrade (2), or a store's failure (:data:`STORE_FAILURE_CODES`); None when ``exc`` is no store's."""
    tracking = _tracking()
    if tracking is None:
        return None
    refusal = tracking.schema_refusal(exc)
    if refusal:
        return str(refusal), 2
    if tracking.is_store_error(exc, os_errors=False):
        return tracking.store_failure(exc), STORE_FAILURE_CODES.get(command, 1)
    return None


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, with the one line to print (e.g. how to resume)."""


def train_help(command: str = "train") -> str:
    lines = [f"usage: hyperflow {command} [key=value ...] [config=settings.yaml]", "", "settings (default):"]
    return "\n".join(lines + settings_lines(TrainConfig))


def _summary(outcome: Any) -> str:
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
    lines.append(
        f"  browse: mlflow ui --backend-store-uri {tracking.tracking_uri()}  then open "
        f"http://127.0.0.1:5000/#/experiments/{outcome.experiment_id}/runs/{outcome.run_id}"
    )
    return "\n".join(lines)


def cmd_train(inv: Invocation) -> int:
    from hyperflow.workflows.train import TrainingDiverged, train

    try:
        outcome = train(inv.train)
    except TrainingDiverged as exc:
        print(f"hyperflow train: diverged: {exc}", file=sys.stderr)
        return 1
    print(_summary(outcome))
    return 0


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
    ]
    return "\n".join(lines)


def cmd_lr_find(inv: Invocation) -> int:
    from hyperflow.workflows.lr_find import lr_find

    outcome = lr_find(inv.train)
    print(lr_find_summary(outcome))
    if outcome.finder.status_ != "ok":  # the LR finder's own status (ok | flat | no_divergence | noisy)
        print(
            f"hyperflow lr-find: warning: status {outcome.finder.status_}: {outcome.finder.status_help_}",
            file=sys.stderr,
        )
    return 0


def search_help() -> str:
    lines = [
        "usage: hyperflow search [search settings] [training settings] [config=settings.yaml]",
        "",
        "search settings (default):",
    ]
    lines += settings_lines(SearchConfig)
    lines += ["", "data settings (default):", *settings_lines(TrainConfig, DATA_SETTINGS)]
    lines += [
        "",
        "every training setting (hyperflow train --help) sets the base of all trials; the space file says what varies.",
    ]
    return "\n".join(lines)


def search_summary(outcome: Any, seconds: float) -> str:
    from hyperflow import tracking

    records = outcome.records
    counts = {s: sum(r.status == s for r in records) for s in names.TRIAL_STATUSES}
    lines = [
        f"hyperflow search: {len(records)} trials ({counts[names.TRIAL_OK]} ok, {counts[names.TRIAL_PRUNED]} "
        f"pruned, {counts[names.TRIAL_FAILED]} failed; {outcome.at_once} at once) in {seconds:.0f} s; stopped by "
        f"{outcome.stop_reason}"
    ]
    best = outcome.best
    if best is None:
        lines.append(f"  no trial finished: see the failed trials' {names.TRIAL_REASON} tags")
    else:
        metrics = "  ".join(f"{k} {v:.4g}" for k, v in outcome.test_metrics.items())
        lines.append(f"  best: trial {best.number} (run {best.run_id}) best_val_loss {best.loss:.4g}; {metrics}")
        lines.append(
            "  best params: "
            + " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.params.items())
        )
        if outcome.registered:
            lines.append(
                f"  model: registered {outcome.registered[0]} version {outcome.registered[1]}, alias challenger"
            )
        top = sorted((r for r in records if r.loss is not None), key=lambda r: r.loss)[:5]
        lines.append(f"  {'trial':>5}  {'status':<7} {'val_loss':>9} {'epochs':>6}")
        lines += [f"  {r.number:>5}  {r.status:<7} {r.loss:>9.4g} {r.epochs:>6}" for r in top]
    lines.append(
        f"  run {outcome.run_id} (experiment {outcome.experiment_id}) in {tracking.tracking_uri()}; "
        f"open http://127.0.0.1:5000/#/experiments/{outcome.experiment_id}/runs"
    )
    return "\n".join(lines)


def cmd_search(inv: Invocation) -> int:
    import time

    from hyperflow.runtime import processes

    if inv.search.backend == "local" and processes.available():  # child processes import torch and MLflow now
        processes.prestart()
    from hyperflow.search.runner import SearchRunner

    runner = SearchRunner(inv.search, inv.train, given=inv.given)
    started = time.monotonic()
    try:
        outcome = runner.run()
    except KeyboardInterrupt as exc:
        if runner.parent_id and not isinstance(exc, Interrupted):  # main prints this one line, and only it
            raise Interrupted(
                f"hyperflow search: interrupted; {_runs_ended()}. Resume with: hyperflow "
                f"search resume={runner.parent_id}"
            ) from None
        raise
    print(search_summary(outcome, time.monotonic() - started))
    return 0 if outcome.best is not None else 1


def _settings_help(command: str, cls: type, codes: str, extra: str = "") -> str:
    lines = [f"usage: hyperflow {command} [key=value ...] [config=settings.yaml]", "", "settings (default):"]
    lines += settings_lines(cls, [f.name for f in fields(cls) if f.name != "gate_rules"])
    return "\n".join(lines + ([extra] if extra else []) + ["", f"exit codes: {codes}"])


PROMOTE_CODES = (
    "0 passed (champion moved; or dry run; or already champion), 1 failed, 2 bad input (also: no champion "
    "and neither a threshold nor allow_first, a candidate for another task/target/columns, a registry "
    "or tracking store that fails; nothing moved), "
    "3 rejected by the gate (alias unchanged), 5 the champion kept moving (nothing moved) or another promotion "
    "moved it on right after (it names the champion), 130 interrupted"
)
RETRAIN_CODES = (
    "0 promoted or skipped (same data and code already done), 1 failed, 2 bad input (or a registry or "
    "store that fails; nothing moved), 3 rejected "
    "by the gate, 4 another retrain holds the lock (or took it over from this one), 5 the champion kept moving, "
    "130 interrupted"
)


def promote_help() -> str:
    return _settings_help("promote", PromoteConfig, PROMOTE_CODES)


def retrain_help() -> str:
    return _settings_help(
        "retrain",
        RetrainConfig,
        RETRAIN_CODES,
        "  any training setting (hyperflow train --help) overrides the champion's, e.g. epochs=50",
    )


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


def cmd_promote(inv: Invocation) -> int:
    from hyperflow.workflows.promote import ChampionConflict, promote

    try:
        outcome = promote(inv.promote)
    except ChampionConflict as exc:
        print(f"hyperflow promote: {exc}", file=sys.stderr)
        return exc.exit_code
    print(promotion_summary(outcome))
    return 0 if outcome.passed else 3


def cmd_retrain(inv: Invocation) -> int:
    from hyperflow.workflows.lock import LockHeld
    from hyperflow.workflows.promote import ChampionConflict
    from hyperflow.workflows.retrain import retrain
    from hyperflow.workflows.train import TrainingDiverged

    try:
        outcome = retrain(inv.retrain, inv.overrides)
    except (LockHeld, ChampionConflict) as exc:
        print(f"hyperflow retrain: {exc}", file=sys.stderr)
        return exc.exit_code
    except TrainingDiverged as exc:
        print(f"hyperflow retrain: training diverged: {exc}; the champion stays", file=sys.stderr)
        return 1
    if outcome.outcome == names.OUTCOME_SKIPPED:
        done_by = "the champion's own run" if outcome.by_champion else "retrain run"
        print(
            f"hyperflow retrain: skipped: {done_by} {outcome.previous_run_id} already did data "
            f"{outcome.data} with this code (force=true to retrain); run {outcome.run_id}"
        )
        return 0
    print(
        f"hyperflow retrain: {outcome.outcome}: version {outcome.version} trained on {outcome.data}; "
        f"run {outcome.run_id}"
    )
    print(promotion_summary(outcome.promotion))
    return 0 if outcome.outcome == names.OUTCOME_PROMOTED else 3


def predict_help() -> str:
    return (
        "usage: hyperflow predict model=<model URI> data=<rows.csv|.parquet> [out=predictions.csv]\n\n"
        "  model   models:/<name>@champion, models:/<name>/<version> or runs:/<run id>/model\n"
        "  data    rows to score (raw columns, any order, missing values allowed)\n"
        "  out     output file (.csv or .parquet): the rows plus prediction (and probability_<class> columns)\n"
        "  allow_missing_columns  true = impute feature columns the file lacks (default false: refuse, naming them)"
    )


def cmd_predict(inv: Invocation) -> int:
    from hyperflow.workflows.predict import predict_file

    count = predict_file(**inv.predict)
    print(f"hyperflow predict: {count} rows scored with {inv.predict['model']} -> {inv.predict['out']}")
    return 0


COMMANDS: dict[str, tuple[Callable[[Invocation], int], Callable[[], str]]] = {
    "train": (cmd_train, train_help),
    "lr-find": (cmd_lr_find, lambda: train_help("lr-find")),
    "search": (cmd_search, search_help),
    "promote": (cmd_promote, promote_help),
    "retrain": (cmd_retrain, retrain_help),
    "predict": (cmd_predict, predict_help),
}


def main(argv: Sequence[str] | None = None, *, from_mlproject: bool = False) -> int:
    """Run one command; its exit code. As the process's entry (the ``hyperflow`` script, ``steps/*.py``), a
    signal once the command's work is done (its last run has ended) ends the process with that code and no
    traceback (runtime.signals); stdout closed early (``| head``) gives 141, as for a tool killed by SIGPIPE."""
    process = argv is None or from_mlproject
    streams = [TolerantStream.wrap("stdout"), TolerantStream.wrap("stderr")] if process else []
    if process:
        signals.own_process()
    code = 1
    try:
        code = _main(argv, from_mlproject=from_mlproject)
    except BrokenPipeError:  # a stream that could not be wrapped
        TolerantStream(sys.stdout).lose()
        code = 141
    finally:
        if process:
            signals.exit_on_signals(code)
    return 141 if code == 0 and any(s.lost for s in streams) else code


def _main(argv: Sequence[str] | None, *, from_mlproject: bool) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] == "--version":
        from hyperflow import __version__

        print(f"hyperflow {__version__}")
        return 0
    command, rest = command_name(argv[0]), argv[1:]
    if command is None:
        print(f"hyperflow: error: unknown command '{argv[0]}': choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    run, helper = COMMANDS[command]
    if any(a in ("-h", "--help") for a in rest):
        print(helper())
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    library_logs.configure()  # the libraries' records in one line each (HYPERFLOW_VERBOSE=1: in full)
    startup.begin()
    # SIGTERM stops the command as Ctrl-C does from its first moment (exit 130, one line), not only once a
    # run is open (tracking.tracked_run ends that run KILLED); once its work is done, a signal ends it with its code
    try:
        with signals.sigterm_stops():
            return _command(run, command, rest, from_mlproject)
    finally:
        if _tracking() is not None:
            _tracking().forget_runs()  # the runs of this command only
        startup.restore()


def _command(run: Callable[[Invocation], int], command: str, rest: list[str], from_mlproject: bool) -> int:
    """Parse, check and run one command: its exit code, with one line for what stopped it."""
    try:
        invocation = parse([command, *rest], from_mlproject=from_mlproject)
        check_start(invocation)
        return run(invocation)
    except UsageError as exc:
        print(f"hyperflow: error: {without_credentials(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        print(
            str(exc) if isinstance(exc, Interrupted) else f"hyperflow {command}: interrupted; {_runs_ended()}",
            file=sys.stderr,
        )
        return 130
    except Exception as exc:  # one line: hyperflow's own outcomes with an exit code (RegistryError), a store's failure
        code, text = getattr(exc, "exit_code", None), str(exc)
        if not (isinstance(code, int) and type(exc).__module__.startswith("hyperflow.")):
            refused = _store_refusal(exc, command)
            if refused is None:
                raise
            text, code = refused
        print(f"hyperflow {command}: error: {without_credentials(text)}", file=sys.stderr)
        return code
