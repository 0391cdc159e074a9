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

EXIT_BAD_INPUT = 2


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
    return parser


def _trial(args) -> int:
    from spectral_study.data import DatasetError
    from spectral_study.trial import TrialConfigError, run_trial

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
