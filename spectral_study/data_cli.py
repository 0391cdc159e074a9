"""The `spectral-study data` command: which data sets are installed, where, and are they intact.

    spectral-study data list [NAME]                  every search path, in order, and what it holds
    spectral-study data verify [NAME] [--path DIR]   re-read every file, check it, print the fingerprint
    spectral-study data fetch NAME [--to DIR]        download with checksums ($SPECTRAL_STUDY_MIRROR)

Exit codes as for every command: 0 ok, 1 missing or corrupt data (or a failed download),
2 bad input (an unknown data set name, an option that does not apply). docs/data.md shows the
output. Torch (through spectral_study.data) is imported only when a data command runs.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.error import URLError

from spectral_study.cli import EXIT_BAD_INPUT
from spectral_study.vocabulary import DATASETS

EXIT_OK, EXIT_MISSING_OR_CORRUPT = 0, 1


def add_parser(commands) -> None:
    """Register `data` and its actions on the `spectral-study` subparsers."""
    data = commands.add_parser("data", help="list, verify or fetch the data sets "
                                             "(Fashion-MNIST, MNIST, CIFAR-10)")
    actions = data.add_subparsers(required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="each search path, in order, and what it holds")
    listing.add_argument("name", nargs="?", help="one data set (default: all)")
    listing.set_defaults(handler=_list)

    verify = actions.add_parser("verify", help="check every file of the copy that would be loaded; "
                                               "print its fingerprint")
    verify.add_argument("name", nargs="?", help="one data set (default: every installed one)")
    verify.add_argument("--path", type=Path, help="check the copy in DIR instead (needs NAME)")
    verify.set_defaults(handler=_verify)

    fetch = actions.add_parser("fetch", help="download a data set, checking its published checksums")
    fetch.add_argument("name")
    fetch.add_argument("--to", type=Path, help="directory to download into (default: "
                                               "$SPECTRAL_STUDY_DATA/NAME if that is set, else "
                                               "~/.cache/spectral-study/NAME)")
    fetch.set_defaults(handler=_fetch)


def _names(name: str | None) -> list[str] | None:
    """The data sets an action applies to; None (after saying why) for an unknown name."""
    if name is None:
        return list(DATASETS)
    if name not in DATASETS:
        print(f"error: unknown dataset {name!r}; available: {', '.join(DATASETS)}", file=sys.stderr)
        return None
    return [name]


def _list(args) -> int:
    from spectral_study.data import survey

    if (names := _names(args.name)) is None:
        return EXIT_BAD_INPUT
    env = os.environ.get("SPECTRAL_STUDY_DATA")
    print(f"Search order (SPECTRAL_STUDY_DATA {'= ' + env if env else 'not set'}); an explicit path "
          f"in a study file or load_dataset() is searched alone.")
    for name in names:
        print(name)
        if name == "synthetic":
            print("  generated in memory from its size and seed; no files")
            continue
        rows = survey(name)
        width = max(len(str(d)) for d, _ in rows)
        used = next((d for d, state in rows if state.startswith("complete")), None)
        for directory, state in rows:
            mark = "  <- loaded from here" if directory == used else ""
            print(f"  {directory!s:<{width}}  {state}{mark}")
    return EXIT_OK


def _verify(args) -> int:
    from spectral_study.data import DatasetError, survey, verify

    if (names := _names(args.name)) is None:
        return EXIT_BAD_INPUT
    if args.path is not None and args.name is None:
        print("error: verify --path DIR needs the data set's NAME, e.g. "
              f"`spectral-study data verify fashion-mnist --path {args.path}`", file=sys.stderr)
        return EXIT_BAD_INPUT
    failed = False
    for name in names:
        if args.name is None and (name == "synthetic" or not any(
                state.startswith("complete") for _, state in survey(name))):
            print(f"{name}: not installed, nothing to verify (`spectral-study data list {name}` shows where it "
                  f"was looked for)" if name != "synthetic" else "synthetic: generated in memory, no files")
            continue
        try:
            result = verify(name, path=args.path)
        except DatasetError as error:
            print(f"error: {error}", file=sys.stderr)
            failed = True
            continue
        failed |= not _print_verification(result)
    return EXIT_MISSING_OR_CORRUPT if failed else EXIT_OK


def _print_verification(result) -> bool:
    print(f"{result.name}: {result.directory}")
    width = max(len(check.path.name) for check in result.files)
    for check in result.files:
        if check.problem is None:
            print(f"  ok       {check.path.name:<{width}}  {check.detail}")
        else:
            print(f"  CORRUPT  {check.path}: {check.problem}")
    bad = [check for check in result.files if check.problem is not None]
    if bad:
        print(f"{result.name}: {len(bad)} of {len(result.files)} files corrupt in {result.directory} "
              f"(`spectral-study data fetch {result.name}` downloads an intact copy)")
        return False
    print(f"  fingerprint {result.fingerprint}")
    print(f"{result.name}: intact")
    return True


def _fetch(args) -> int:
    from spectral_study.data import DatasetError, fetch, fingerprint

    if (names := _names(args.name)) is None:
        return EXIT_BAD_INPUT
    if names == ["synthetic"]:
        print("error: synthetic is generated in memory from its size and seed; nothing to fetch",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        directory = fetch(args.name, to=args.to, report=lambda message: print(message, flush=True))
    except DatasetError as error:
        # One line: offline is an expected state of a compute node, not a crash.
        offline = isinstance(error.__cause__, (URLError, ConnectionError, TimeoutError))
        hint = (f" (no network? copy the files by hand and run `spectral-study data verify "
                f"{args.name}`; see docs/data.md)") if offline else ""
        print(f"error: {' '.join(str(error).split())}{hint}", file=sys.stderr)
        return EXIT_MISSING_OR_CORRUPT
    print(f"{args.name}: complete in {directory}, fingerprint {fingerprint(args.name, directory)}")
    return EXIT_OK
