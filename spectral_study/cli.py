"""The `spectral-study` command line.

    spectral-study trial CONFIG.yaml        run one trial in this process, print its summary
    spectral-study validate STUDY.yaml      check a study file (no Ray started)
    spectral-study run STUDY.yaml [--address ADDR] [--storage PATH] [--name N]
    spectral-study resume PATH              continue an interrupted study
    spectral-study status PATH              trials done / stopped / failed and the best so far

Exit codes: 0 success, 1 the work itself failed, 2 bad input (file, field, value named).
Ray is imported only by the commands that schedule work.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from spectral_study._validate import SHARED_STORAGE_ENV

EXIT_BAD_INPUT = 2
SHARED_HELP = ("the local storage path is the same folder on every node (NFS): allow it on a cluster of "
               f"several nodes (or set {SHARED_STORAGE_ENV}=1)")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spectral-study", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    trial = commands.add_parser("trial", help="run one trial from a YAML config and print its summary")
    trial.add_argument("config", type=Path)
    trial.set_defaults(handler=_trial)

    validate = commands.add_parser("validate", help="check a study file and show what it would run (no Ray)")
    validate.add_argument("study", type=Path)
    validate.set_defaults(handler=_validate)

    run = commands.add_parser("run", help="run a study on Ray Tune; results land in Parquet")
    run.add_argument("study", type=Path)
    run.add_argument("--address", help="Ray cluster to join ('auto', 'ray://host:10001'); "
                                       "default: start an embedded local Ray")
    run.add_argument("--storage", help="override the study's storage (a path or a URI such as s3://bucket/x)")
    run.add_argument("--shared-storage", action="store_true", help=SHARED_HELP)
    run.add_argument("--name", help="override the study's name (its results folder)")
    run.set_defaults(handler=_run)

    resume = commands.add_parser("resume", help="continue an interrupted study from its results folder")
    resume.add_argument("path", help="results/<study> (or its _tune folder)")
    resume.add_argument("--address", help="Ray cluster to join; default: an embedded local Ray")
    resume.add_argument("--shared-storage", action="store_true", help=SHARED_HELP)
    resume.set_defaults(handler=_resume)

    status = commands.add_parser("status", help="trials done / stopped / failed / diverged and the best so far")
    status.add_argument("path", help="results/<study>")
    status.set_defaults(handler=_status)

    from spectral_study import data_cli  # here, not at the top: data_cli imports EXIT_BAD_INPUT from us
    data_cli.add_parser(commands)
    return parser


def _load_spec(path: Path, **overrides):
    from spectral_study.study import StudyError, load_study, with_overrides

    try:
        spec = load_study(path)
        if any(v is not None for v in overrides.values()):
            spec = with_overrides(spec, **overrides)
        return spec
    except StudyError as error:
        print(f"error: {error}", file=sys.stderr)
        return None


def _validate(args) -> int:
    spec = _load_spec(args.study)
    if spec is None:
        return EXIT_BAD_INPUT
    from spectral_study.results import join_uri  # keeps a URI's ?query at its end

    kind = (f"grid, {spec.search.repeats} seed(s) per cell" if spec.search.type == "grid"
            else f"optuna {spec.search.sampler}, {spec.search.metric} {spec.search.direction}")
    print(f"{args.study}: ok — study {spec.name!r}: {spec.trial_count()} trials ({kind}) on {spec.base.dataset}, "
          f"{spec.base.epochs} epochs, scheduler {spec.scheduler.type}, results in {join_uri(spec.storage, spec.name)}")
    return 0


def _run(args) -> int:
    spec = _load_spec(args.study, storage=args.storage, name=args.name)
    if spec is None:
        return EXIT_BAD_INPUT
    # Ray is imported only now, after the study file has been checked.
    from spectral_study.data import DatasetError
    from spectral_study.results import ResultsError, results_root
    from spectral_study.study import StudyError
    from spectral_study.tune import run_study

    print(f"study {spec.name}: {spec.trial_count()} trials ({spec.search.type}), "
          f"results -> {results_root(spec.storage, spec.name)}", flush=True)
    try:
        outcome = run_study(spec, address=args.address, shared_storage=args.shared_storage or None)
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
