"""The `spectral-study` command line.

    spectral-study trial CONFIG.yaml        run one trial in this process, print its summary
    spectral-study validate STUDY.yaml [KEY=VALUE ...] [--list]   check a study (no Ray started)
    spectral-study run STUDY.yaml [KEY=VALUE ...] [--extend] [--address ADDR] [--storage PATH] [--name N]
    spectral-study resume PATH              continue an interrupted study
    spectral-study status PATH              trials done / running / failed and the best so far
    spectral-study compact PATH             merge a study's per-trial fragments into one file per table

KEY=VALUE overrides a field of the study file (``training.epochs=1 model.widths=[64,256]``, the
value read as YAML; spectral_study.study.overrides). Exit codes: 0 every trial completed, was
stopped by the scheduler or diverged; 1 a trial failed (they are listed); 2 bad input (file,
field, value named; a results folder that already holds a run); 130 the run was stopped (Ctrl-C)
before every trial had run (`resume` finishes it). Ray is imported only by the
commands that schedule work.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

from spectral_study._validate import SHARED_STORAGE_ENV

EXIT_BAD_INPUT = 2
OVERRIDES_HELP = ("override a field of the study file, e.g. training.epochs=1 search.repeats=5 "
                  "model.widths=[64,256] (the value is read as YAML)")
SHARED_HELP = ("the local storage path is the same folder on every node (NFS): allow it on a cluster of "
               f"several nodes (or set {SHARED_STORAGE_ENV}=1)")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    # KEY=VALUE overrides may come after options too (`run x.yaml --extend search.repeats=5`).
    unknown = [token for token in extra if token.startswith("-") or "=" not in token]
    if unknown or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `validate --list | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spectral-study", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    trial = commands.add_parser("trial", help="run one trial from a YAML config and print its summary")
    trial.add_argument("config", type=Path)
    trial.set_defaults(handler=_trial)

    validate = commands.add_parser("validate", help="check a study file and show what it would run (no Ray)")
    validate.add_argument("study", type=Path)
    validate.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=OVERRIDES_HELP)
    validate.add_argument("--list", action="store_true", help="print every trial it would run, one line each")
    validate.set_defaults(handler=_validate)

    run = commands.add_parser("run", help="run a study on Ray Tune; results land in Parquet")
    run.add_argument("study", type=Path)
    run.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=OVERRIDES_HELP)
    run.add_argument("--extend", action="store_true",
                     help="run only the trials the results folder lacks: the cells or seeds this study adds "
                          "to the one run there before (any other change is refused)")
    run.add_argument("--address", help="Ray cluster to join ('auto', 'ray://host:10001'); "
                                       "default: start an embedded local Ray")
    run.add_argument("--storage", help="override the study's storage (a path or a URI such as s3://bucket/x)")
    run.add_argument("--shared-storage", action="store_true", help=SHARED_HELP)
    run.add_argument("--name", help="override the study's name (its results folder)")
    run.set_defaults(handler=_run)

    resume = commands.add_parser("resume", help="continue an interrupted study from its results folder")
    resume.add_argument("path", help="results/<study> (its latest run), or one of its _tune* folders")
    resume.add_argument("--address", help="Ray cluster to join; default: an embedded local Ray")
    resume.add_argument("--shared-storage", action="store_true", help=SHARED_HELP)
    resume.set_defaults(handler=_resume)

    status = commands.add_parser("status", help="trials done / stopped / failed / diverged and the best so far")
    status.add_argument("path", help="results/<study>")
    status.set_defaults(handler=_status)

    compact = commands.add_parser("compact", help="merge a finished study's per-trial Parquet fragments into "
                                                  "one file per table (run and resume do it when every trial ends)")
    compact.add_argument("path", help="results/<study>")
    compact.set_defaults(handler=_compact)

    from spectral_study import data_cli  # here, not at the top: data_cli imports EXIT_BAD_INPUT from us
    data_cli.add_parser(commands)
    return parser


def _load_spec(path: Path, overrides=(), **flags):
    from spectral_study.study import StudyError, load_study_with, with_overrides

    try:
        spec = load_study_with(path, overrides)
        if any(v is not None for v in flags.values()):
            spec = with_overrides(spec, **flags)
        return spec
    except StudyError as error:
        print(f"error: {error}", file=sys.stderr)
        return None


def _validate(args) -> int:
    spec = _load_spec(args.study, args.overrides)
    if spec is None:
        return EXIT_BAD_INPUT
    from spectral_study.results import join_uri  # keeps a URI's ?query at its end

    kind = (f"grid, {spec.search.repeats} seed(s) per cell" if spec.search.type == "grid"
            else f"optuna {spec.search.sampler}, {spec.search.metric} {spec.search.direction}")
    print(f"{args.study}: ok — study {spec.name!r}: {spec.trial_count()} trials ({kind}) on {spec.base.dataset}, "
          f"{spec.base.epochs} epochs, scheduler {spec.scheduler.type}, results in {join_uri(spec.storage, spec.name)}")
    if args.list:
        for line in trial_lines(spec):
            print(line)
    return 0


def trial_lines(spec) -> list[str]:
    """One line per trial a study runs: its cell and the settings that vary between trials (a
    grid); an Optuna search's trials are sampled as it runs, so its space instead."""
    if spec.search.type != "grid":
        space = spec.search.space
        lines = [f"{spec.search.n_trials} Optuna trials ({spec.search.sampler}), each sampled from:"]
        for name in ("modes", "widths", "activations", "eigenvalues", "optimizers", "batch_sizes"):
            options = getattr(space, name)
            if len(options) > 1:
                lines.append(f"  {name}: {', '.join(map(str, options))}")
        for name in ("lr", "lr_eigvals"):
            rate = getattr(space, name)
            if rate is not None:
                lines.append(f"  {name}: {rate.low:g} to {rate.high:g}{' (log)' if rate.log else ''}")
        return lines
    rows = [config.columns() for config in spec.trial_configs()]
    hidden = {"cell", "config_json", "width", "n_hidden_layers"}  # cell is shown; the rest restate widths
    varying = [key for key in rows[0] if key not in hidden and len({str(row[key]) for row in rows}) > 1]
    width = len(str(len(rows)))
    cells = max(len(row["cell"]) for row in rows)
    return [f"{i:>{width}}  {row['cell']:<{cells}}  " + "  ".join(f"{key}={row[key]}" for key in varying)
            for i, row in enumerate(rows, 1)]


def _run(args) -> int:
    spec = _load_spec(args.study, args.overrides, storage=args.storage, name=args.name)
    if spec is None:
        return EXIT_BAD_INPUT
    from spectral_study.results import ResultsError, results_root
    from spectral_study.runs import plan_run
    from spectral_study.study import StudyError

    try:  # a results folder that already holds a run is refused before Ray starts
        plan_run(spec, extend=args.extend)
    except (StudyError, ResultsError) as error:
        return _bad_input(str(error))
    # Ray is imported only now, after the study file and its folder have been checked.
    from spectral_study.data import DatasetError
    from spectral_study.tune import run_study

    print(f"study {spec.name}: {spec.trial_count()} trials ({spec.search.type}), "
          f"results -> {results_root(spec.storage, spec.name)}", flush=True)
    try:
        outcome = run_study(spec, address=args.address, shared_storage=args.shared_storage or None,
                            extend=args.extend)
    except DatasetError as error:
        return _bad_input(f"{args.study}: dataset: {error}")
    except (StudyError, ResultsError) as error:  # storage the trials cannot use
        return _bad_input(str(error))
    return outcome.exit_code


def _resume(args) -> int:
    from spectral_study.data import DatasetError
    from spectral_study.results import ResultsError
    from spectral_study.study import StudyError
    from spectral_study.tune import resume_study

    try:
        outcome = resume_study(args.path, address=args.address, shared_storage=args.shared_storage or None)
    except (FileNotFoundError, DatasetError, StudyError, ResultsError) as error:
        return _bad_input(str(error))
    return outcome.exit_code


def _status(args) -> int:
    from spectral_study.results import ResultsError
    from spectral_study.status import study_status

    try:
        print(study_status(args.path))
    except ResultsError as error:
        return _bad_input(str(error))
    return 0


def _compact(args) -> int:
    from spectral_study.compaction import compact_results
    from spectral_study.results import ResultsError, study_root

    try:
        print(compact_results(study_root(args.path)))
    except ResultsError as error:
        return _bad_input(str(error))
    return 0


def _trial(args) -> int:
    from spectral_study.config import TrialConfigError
    from spectral_study.data import DatasetError
    from spectral_study.trial import run_trial

    try:
        config = yaml.safe_load(args.config.read_text())
    except OSError as error:
        return _bad_input(f"{args.config}: cannot read: {error.strerror}")
    except yaml.YAMLError as error:
        return _bad_input(f"{args.config}: not valid YAML: {error}")
    if not isinstance(config, dict):
        return _bad_input(f"{args.config}: expected a mapping of trial config keys, got {type(config).__name__}")

    def progress(metrics: dict, state=None) -> None:
        print(f"epoch {metrics['epoch']:>3}  train loss {metrics['train_loss']:.4f}  "
              f"test acc {metrics['test_accuracy']:.4f}  ({metrics['epoch_seconds']:.1f} s)", flush=True)

    try:
        summary = run_trial(config, progress)
    except (TrialConfigError, DatasetError) as error:
        return _bad_input(f"{args.config}: {error}")
    print(format_summary(summary))
    return 0


def format_summary(summary: dict) -> str:
    cfg = summary["config"]
    lines = [
        f"status           {summary['status']} ({summary['epochs_completed']} epochs)",
        f"model            {cfg['mode']} {cfg['dataset']} widths={cfg['widths']} {cfg['activation']} "
        f"eigenvalues={cfg['eigenvalues']}",
        f"parameters       {summary['trainable_params']:,} trainable of {summary['total_params']:,}",
        f"test accuracy    final {summary['final_test_accuracy']:.4f}, best {summary['best_test_accuracy']:.4f}",
        f"wall time        {summary['wall_seconds']:.1f} s on {summary['device']} ({summary['host']})",
    ]
    return "\n".join(lines)


def _bad_input(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
