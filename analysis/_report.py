"""What every analysis script shares: its command line, its error exit, Markdown and PNG output.

matplotlib is imported here only, lazily and with the Agg backend (no display needed).
"""
from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from analysis.stats import AnalysisError, format_estimate

# One colour per learning mode, the same in every figure.
MODE_ORDER = ("spectral-eigvals", "spectral-eigvecs", "spectral-full", "dense", "dense-restricted")
_MODE_COLORS = {"spectral-eigvals": "tab:blue", "spectral-eigvecs": "tab:purple",
                "spectral-full": "tab:green", "dense": "tab:orange", "dense-restricted": "tab:red"}
_SPARE_COLORS = ("tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")
STATUS_NOTE = "completed trials only; a trial is one seed (its metrics are the mean over `repeats` seeds if > 1)"


def parse_args(argv: Sequence[str] | None, description: str,
               add_arguments: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("results", nargs="+", metavar="RESULTS_DIR",
                        help="a study's results folder (results/<study>); several are pooled")
    parser.add_argument("--out", default=None,
                        help="where figures and tables go (default: <first RESULTS_DIR>/analysis)")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap random state (default 0)")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    args.out = Path(args.out) if args.out else Path(args.results[0]) / "analysis"
    return args


def run(body: Callable[[], list[Path]]) -> int:
    """Run a script's body: print the paths it wrote (exit 0), or the data problem (exit 2)."""
    try:
        written = body()
    except AnalysisError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


def where(results: Sequence[str]) -> str:
    return ", ".join(str(r) for r in results)


def mode_color(mode: str, index: int = 0) -> str:
    return _MODE_COLORS.get(mode, _SPARE_COLORS[index % len(_SPARE_COLORS)])


def mode_rank(label: str) -> tuple[int, str]:
    """Sort key of a line label that starts with a mode name: the paper's mode order first."""
    for rank, mode in enumerate(MODE_ORDER):
        if label == mode or label.startswith(mode + " "):
            return rank, label
    return len(MODE_ORDER), label


def slug(*parts) -> str:
    text = "_".join(str(p) for p in parts if p is not None and str(p) != "")
    return re.sub(r"[^A-Za-z0-9.=-]+", "-", text).strip("-") or "all"


def cell(row) -> str:
    return format_estimate(row["mean"], row["ci_low"], row["ci_high"], int(row["n"]))


def markdown_table(frame: pd.DataFrame) -> str:
    """A pipe table (no tabulate dependency); the index becomes the first column."""
    frame = frame.reset_index()
    header = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    for values in frame.itertuples(index=False):
        lines.append("| " + " | ".join("" if pd.isna(v) else str(v).replace("|", "\\|") for v in values) + " |")
    return "\n".join(lines)


def write_markdown(path: Path, title: str, intro: str, sections: list[tuple[str, pd.DataFrame]]) -> Path:
    parts = [f"# {title}", "", intro, ""]
    for heading, table in sections:
        parts += [f"## {heading}", "", markdown_table(table), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts))
    return path


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    pyplot().close(fig)
    return path
