"""Shared statistics for the analysis scripts: pure functions on tidy, labelled DataFrames.

    from analysis.stats import load, summarize, interval

    tables = load(["results/fmnist-widths-relu"])              # {"trials": DataFrame, ...}
    cells = summarize(tables["trials"], ["mode", "width"], "final_test_accuracy")
    # columns: mode, width, n, n_nan, mean, ci_low, ci_high, interval (completed trials only)

Intervals are honest about small n (STYLE.md, last section): `interval` takes a Student-t
interval on the mean up to `T_MAX_N` values and a seeded percentile bootstrap above, and every
`Interval` says which one it is (``.label``: "95 % t-interval", "95 % bootstrap"), so a table
or figure can say what its bands are. Plotting code only consumes these frames. No matplotlib
here; scipy only inside `t_interval`.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from spectral_study.results import ResultsError, load_results

__all__ = [
    "INTERVAL_METHODS",
    "KEYS",
    "T_MAX_N",
    "AnalysisError",
    "Interval",
    "bootstrap_ci",
    "format_estimate",
    "interval",
    "load",
    "require_columns",
    "summarize",
    "t_interval",
]

# A trial's identity across several results folders: trial ids are unique within a study only.
KEYS = ["results_dir", "study", "trial_id"]
SUMMARY_COLUMNS = ["n", "n_nan", "mean", "ci_low", "ci_high", "interval"]
# "auto": a t-interval up to T_MAX_N values, the percentile bootstrap above (see `interval`).
INTERVAL_METHODS = ("auto", "t", "bootstrap")
T_MAX_N = 10


class AnalysisError(Exception):
    """Results that cannot answer an analysis: names the folder, the table, what is missing and
    which study produces it."""


class Interval(tuple):
    """``(point, low, high)`` of an estimate; also ``.n`` (values used), ``.method`` ("t",
    "bootstrap", or "none" when there is no interval), ``.confidence`` and ``.degenerate``
    (fewer than two values: no interval, low == high == point)."""

    def __new__(cls, point: float, low: float, high: float, *, n: int, method: str = "bootstrap",
                confidence: float = 0.95):
        self = super().__new__(cls, (float(point), float(low), float(high)))
        self.n = n
        self.method = "none" if n < 2 else method
        self.confidence = confidence
        return self

    point = property(lambda self: self[0])
    low = property(lambda self: self[1])
    high = property(lambda self: self[2])
    degenerate = property(lambda self: self.n < 2)

    @property
    def label(self) -> str:
        """What the interval is, for a table or a legend: "95 % t-interval", "95 % bootstrap",
        or "no interval (n = 1)"."""
        return interval_label(self.method, self.confidence, n=self.n)

    def __repr__(self) -> str:
        flag = ", degenerate" if self.degenerate else ""
        return (f"Interval(point={self[0]!r}, low={self[1]!r}, high={self[2]!r}, n={self.n}, "
                f"method={self.method!r}{flag})")


def interval_label(method: str, confidence: float = 0.95, *, n: int | None = None) -> str:
    if method == "none":
        return f"no interval (n = {n})" if n is not None else "no interval"
    name = {"t": "t-interval", "bootstrap": "bootstrap"}[method]
    return f"{100 * confidence:g} % {name}"


def interval(values, *, method: str = "auto", confidence: float = 0.95, reps: int = 2000,
             seed: int = 0) -> Interval:
    """The mean of ``values`` and its ``confidence`` interval.

    ``method="auto"`` (the default) takes `t_interval` for n ≤ `T_MAX_N` and `bootstrap_ci` (the
    percentile bootstrap, ``reps`` resamples from ``seed``) above. Why: n values have only
    C(2n − 1, n) distinct bootstrap resamples (10 for n = 3), and the percentile interval
    estimates the spread with divisor n, not n − 1, and with the normal's quantile instead of
    Student's: at n = 3 it is less than half as wide as it should be. The t-interval is exact
    for normal data and close for the bounded, unimodal accuracies we average over seeds. Above
    ten values the percentile bootstrap needs no normality and follows skew, at a known cost:
    it still runs narrow (for symmetric data about 16 % narrower than the t-interval at n = 11,
    6 % at n = 30). We keep it rather than BCa, whose jackknife acceleration is erratic at the n
    we have and undefined when values tie (test accuracies on one test set often do). One value
    gives no interval, flagged ``degenerate``.
    """
    if method not in INTERVAL_METHODS:
        raise ValueError(f"unknown interval method {method!r}; available: {', '.join(INTERVAL_METHODS)}")
    data = _checked(values, "interval")
    if method == "t" or (method == "auto" and data.size <= T_MAX_N):
        return t_interval(data, confidence=confidence)
    return bootstrap_ci(data, reps=reps, confidence=confidence, seed=seed)


def t_interval(values, *, confidence: float = 0.95) -> Interval:
    """Student-t interval on the mean: mean ± t_{(1+confidence)/2, n−1} · s / √n, with s the
    sample standard deviation (divisor n − 1). One value: no interval, flagged ``degenerate``."""
    data = _checked(values, "t_interval")
    _check_confidence(confidence)
    mean = float(np.mean(data))
    if data.size == 1:
        return Interval(mean, mean, mean, n=1, method="t", confidence=confidence)
    from scipy.stats import t

    half = float(t.ppf((1 + confidence) / 2, data.size - 1)) * float(np.std(data, ddof=1)) / np.sqrt(data.size)
    return Interval(mean, mean - half, mean + half, n=int(data.size), method="t", confidence=confidence)


def bootstrap_ci(values, *, stat: Callable = np.mean, reps: int = 2000, confidence: float = 0.95,
                 seed: int = 0) -> Interval:
    """Point estimate ``stat(values)`` and its percentile-bootstrap interval.

    ``reps`` resamples of ``values`` with replacement, drawn from ``np.random.default_rng(seed)``;
    the interval is the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the
    resampled statistic. Too narrow at small n: for a mean, use `interval`. One value gives no
    interval: low == high == point, and the result is flagged ``degenerate``. NaN or infinite
    values are refused (drop them first, as `summarize` does, and count them).
    """
    data = _checked(values, "bootstrap_ci")
    if not isinstance(reps, (int, np.integer)) or reps < 1:
        raise ValueError(f"reps must be a positive integer, got {reps!r}")
    _check_confidence(confidence)
    point = float(stat(data))
    if data.size == 1:
        return Interval(point, point, point, n=1, confidence=confidence)
    rng = np.random.default_rng(seed)
    samples = data[rng.integers(0, data.size, size=(reps, data.size))]
    try:
        resampled = np.asarray(stat(samples, axis=1), dtype=float)
    except TypeError:  # a statistic without an `axis` argument
        resampled = np.array([stat(row) for row in samples], dtype=float)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(resampled, [alpha, 1 - alpha])
    return Interval(point, low, high, n=int(data.size), method="bootstrap", confidence=confidence)


def summarize(df: pd.DataFrame, by: Sequence[str], value: str, *, status: str | None = "completed",
              method: str = "auto", reps: int = 2000, confidence: float = 0.95,
              seed: int = 0) -> pd.DataFrame:
    """One row per group of ``by``: ``n`` (finite values), ``n_nan`` (NaN values dropped),
    ``mean``, ``ci_low``, ``ci_high`` (see `interval`) and ``interval`` (its label, e.g.
    "95 % t-interval").

    Only rows whose ``status`` column equals ``status`` count (None keeps every row). Groups keep
    missing keys (a null ``subset_seed`` is a group of its own). A group whose values are all NaN
    has n = 0 and NaN estimates.
    """
    by = list(by)
    needed = [*by, value] + (["status"] if status is not None else [])
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise AnalysisError(f"summarize: missing column(s) {missing}; the frame has {list(df.columns)}")
    data = df[df["status"] == status] if status is not None else df
    rows = []
    if len(data):
        values = _floats(data[value])
        for key, index in data.groupby(by, dropna=False, sort=True).indices.items():
            group = values[index]
            finite = group[np.isfinite(group)]
            if finite.size:
                estimate = interval(finite, method=method, confidence=confidence, reps=reps, seed=seed)
                point, low, high, label = *estimate, estimate.label
            else:
                point = low = high = np.nan
                label = interval_label("none", n=0)
            key = key if isinstance(key, tuple) else (key,)
            rows.append({**dict(zip(by, key)), "n": int(finite.size), "n_nan": int(group.size - finite.size),
                         "mean": point, "ci_low": low, "ci_high": high, "interval": label})
    result = pd.DataFrame(rows, columns=[*by, *SUMMARY_COLUMNS])
    for column in by:  # keep the input's types (groupby hands keys back as plain objects)
        result[column] = result[column].astype(df[column].dtype)
    return result.astype({"n": "int64", "n_nan": "int64", "mean": "float64",
                          "ci_low": "float64", "ci_high": "float64", "interval": "object"}).reset_index(drop=True)


def require_columns(df: pd.DataFrame, columns: Iterable[str], table: str, hint: str, *,
                    where: str | None = None, allow_empty: bool = False) -> None:
    """Refuse a table that lacks ``columns`` (or has no rows, unless ``allow_empty``).

    The message names ``where`` (the results folders), the table, what is missing and ``hint``:
    the study that produces the data, e.g. "run studies/fmnist-pruning-tanh.yaml (pruning:
    section) to produce the pruning table".
    """
    prefix = f"{where}: " if where else ""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise AnalysisError(f"{prefix}the {table} table lacks column(s) {', '.join(missing)}; {hint}")
    if not allow_empty and len(df) == 0:
        raise AnalysisError(f"{prefix}the {table} table has no rows; {hint}")


def load(results_dirs: str | os.PathLike | Iterable[str | os.PathLike]) -> dict[str, pd.DataFrame]:
    """Every table of one or several results folders, concatenated (`load_results` for each).

    Each row gains ``results_dir`` (the folder as given), so ``KEYS`` identify a trial even when
    two folders hold the same study. A folder given twice is read once. A folder without results
    raises `AnalysisError` naming it.
    """
    if isinstance(results_dirs, (str, os.PathLike)):
        results_dirs = [results_dirs]
    dirs = list(dict.fromkeys(os.fspath(d) for d in results_dirs))
    if not dirs:
        raise AnalysisError("no results folder given")
    loaded: dict[str, list[pd.DataFrame]] = {}
    for directory in dirs:
        try:
            tables = load_results(directory)
        except ResultsError as error:
            raise AnalysisError(str(error)) from None
        for name, frame in tables.items():
            loaded.setdefault(name, []).append(frame.assign(results_dir=directory))
    return {name: _concat(frames) for name, frames in loaded.items()}


def format_estimate(mean: float, low: float, high: float, n: int, *, digits: int = 3) -> str:
    """``"0.812 [0.801, 0.823] (3)"``; one value: ``"0.812 (n=1, no CI)"``; none: ``"–"``."""
    if n == 0 or not np.isfinite(mean):
        return "–"
    if n == 1:
        return f"{mean:.{digits}f} (n=1, no CI)"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}] ({n})"


def _checked(values, who: str) -> np.ndarray:
    data = np.asarray(values, dtype=float).ravel()
    if data.size == 0:
        raise ValueError(f"{who} needs at least one value, got none")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{who} got {int(np.sum(~np.isfinite(data)))} NaN/infinite value(s) "
                         f"among {data.size}; drop them first (and report how many)")
    return data


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")


def _floats(column: pd.Series) -> np.ndarray:
    """A numeric column as float64, nulls as NaN (nullable Int64/Float64 included)."""
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    non_empty = [f for f in frames if len(f)]
    if not non_empty:
        return frames[0]
    return pd.concat(non_empty, ignore_index=True) if len(non_empty) > 1 else non_empty[0].reset_index(drop=True)
