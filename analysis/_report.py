"""What every analysis script shares: its command line, its error exit, Markdown and PNG output.

matplotlib is imported here only, lazily and with the Agg backend (no display needed).
"""
from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pandas as pd

from analysis.stats import INTERVAL_METHODS, T_MAX_N, AnalysisError, format_estimate
from spectral_study.vocabulary import MODES

# One colour per learning mode (in `MODES` order), the same in every figure.
_MODE_COLORS = dict(zip(MODES, ("tab:blue", "tab:purple", "tab:green", "tab:orange", "tab:red")))
_SPARE_COLORS = ("tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")
STATUS_NOTE = "Completed trials only; a trial is one seed (its metrics are the mean over `repeats` seeds if > 1)"


def parse_args(argv: Sequence[str] | None, description: str,
               add_arguments: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("results", nargs="+", metavar="RESULTS_DIR",
                        help="a study's results folder (results/<study>); several are pooled")
    parser.add_argument("--out", default=None,
                        help="where figures and tables go (default: <first RESULTS_DIR>/analysis)")
    parser.add_argument("--interval", choices=INTERVAL_METHODS, default="auto",
                        help=f"95 %% intervals: auto (default: a t-interval up to n = {T_MAX_N}, the "
                             f"percentile bootstrap above), t or bootstrap")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap random state (default 0)")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    args.out = Path(args.out) if args.out else default_out(args.results[0])
    return args


def default_out(results: str) -> Path:
    """``<results>/analysis`` for a local folder; for a URI (s3://bucket/prefix/study?query),
    a local ``analysis-<study>`` folder here: figures are written with plain file I/O."""
    if "://" not in str(results):
        return Path(results) / "analysis"
    path = str(results).split("?", 1)[0].rstrip("/")
    return Path(f"analysis-{path.rsplit('/', 1)[-1]}")


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
    for rank, mode in enumerate(MODES):
        if label == mode or label.startswith(mode + " "):
            return rank, label
    return len(MODES), label


def interval_note(labels: Iterable[str], *, reps: int, seed: int, over: str = "trials") -> str:
    """What a table's intervals are, from the ``interval`` labels of its rows, e.g.
    "[95 % t-interval over trials (n ≤ 10)]"; a bootstrap also names its resamples and seed."""
    used = sorted({str(label) for label in labels if not str(label).startswith("no interval")})
    parts = []
    for label in used:
        if label.endswith("t-interval"):
            parts.append(f"{label} over {over}, mean ± t·s/√n")
        else:
            parts.append(f"{label} over {over}: percentile, {reps} resamples, seed {seed}")
    if not parts:
        return "no interval (one value per cell)"
    return "; ".join(parts)


def interval_names(labels: Iterable[str]) -> str:
    """The intervals a figure shows, from its rows' ``interval`` labels: "95 % t-interval"."""
    used = sorted({str(label) for label in labels if not str(label).startswith("no interval")})
    return " / ".join(used) or "no interval (one value each)"


def band_note(labels: Iterable[str]) -> str:
    """A figure's words for its shaded bands: "shaded: 95 % t-interval"."""
    return "shaded: " + interval_names(labels)


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
