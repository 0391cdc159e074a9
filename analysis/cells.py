"""What makes a cell: which trials are replicates of one another and may be pooled.

    from analysis import cells

    done = cells.completed(trials)                         # results, not failures
    done = cells.label_variants(done)                      # + "variant": mode (eigenvalue set…)
    done = cells.split_mixed(done, ["dataset", "variant", "widths"])   # or cells.refuse_mixed(…)

A cell's trials differ only in their random draws (`REPLICATES`: the seed, and the subset seed
of dense-restricted); every other setting of the trial config (`SETTINGS`, derived from
`TrialConfig`'s columns, plus the data's fingerprint and the results folder) must agree before a
mean over them means anything. A setting that does not apply to a mode (φ's initialisation for
a dense network, the eigenvalue set for dense) is ignored for that mode. When a cell would pool
unlike trials, a script either splits them into separate variants (`split_mixed`: the differing
settings join the variant's label) or refuses (`refuse_mixed`: an `AnalysisError` naming the
setting and its values); each script's docstring says which it does.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from analysis.stats import AnalysisError
from spectral_study.config import config_columns
from spectral_study.vocabulary import DENSE_MODES, EIGVAL_MODES, SPECTRAL_MODES

COMPLETED = "completed"  # the one status of `vocabulary.STATUSES` whose metrics are a finished result

# Random draws: what a cell's replicates differ in, and what a mean over the cell averages over.
REPLICATES = ("seed", "subset_seed")
# Columns that do not change what a trial measures: where it ran, how it is labelled, and how the
# runner ran it (a seed packed with others or alone, its members stacked or one by one: the same
# result up to float rounding; how often it checkpointed). Results written before a column
# existed hold null there, and must still pool with newer ones.
_BOOKKEEPING = ("device_requested", "data_path", "cell", "config_json",
                "pack_seeds", "member_training", "checkpoint_every")
# The mode starts a variant's label (`label_variants`); the other columns derive from `widths`.
_DERIVED = ("mode", "n_hidden_layers", "width")
# Facts about a trial that are not in its config but must match too: the bytes of its data set
# (a trial records their checksum) and the results folder (one study run, one protocol).
_PROVENANCE = ("data_fingerprint", "results_dir")
SETTINGS = tuple(c for c in config_columns() if c not in REPLICATES + _BOOKKEEPING + _DERIVED) + _PROVENANCE
# Settings that a study may resolve per mode (learning rates tuned for each): trials of two modes
# compared with each other need not agree on them (`shared_settings`).
PER_MODE = ("lr", "lr_eigvals")
# Settings that apply to some modes only; for the others their value is ignored.
_APPLIES_TO = {
    "eigenvalues": SPECTRAL_MODES + ("dense-restricted",),  # it sets how many weights train
    "phi_init": SPECTRAL_MODES,
    "eigval_init": SPECTRAL_MODES,
    "lr_eigvals": EIGVAL_MODES,
    "dense_init": DENSE_MODES,
}
NOT_APPLICABLE = "n/a"


def completed(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of completed trials (stopped, diverged and failed ones hold no final result)."""
    if "status" not in frame.columns:
        raise AnalysisError(f"no status column to keep completed trials by; columns: {list(frame.columns)}")
    return frame[frame["status"] == COMPLETED]


def applies(setting: str, mode: str) -> bool:
    """Whether ``setting`` changes a trial of ``mode``."""
    return mode in _APPLIES_TO.get(setting, (mode,))


def label_variants(trials: pd.DataFrame, *, by_subset: bool = False) -> pd.DataFrame:
    """Adds ``variant``: the mode, plus the eigenvalue set when the results hold several (for
    spectral modes, and for dense-restricted, whose number of trained weights it sets; dense has
    no eigenvalues whatever its config says), plus with ``by_subset`` the subset seed of
    dense-restricted ("dense-restricted (subset 2)"), which is otherwise a replicate."""
    modes = trials["mode"].fillna("")
    by_set = modes.map(lambda m: applies("eigenvalues", m)).astype(bool)
    variant = trials["mode"].astype("string")
    if trials.loc[by_set, "eigenvalues"].nunique() > 1:
        variant = variant.where(~by_set, variant + " (" + trials["eigenvalues"].astype("string") + ")")
    if by_subset:
        subset = trials["subset_seed"].astype("Int64")
        restricted = (modes == "dense-restricted") & subset.notna()
        variant = variant.where(~restricted, variant + " (subset " + subset.astype("string") + ")")
    return trials.assign(variant=variant)


def settings(trials: pd.DataFrame, names: Iterable[str] | None = None) -> pd.DataFrame:
    """The ``names`` settings (default: every `SETTINGS` column the frame has) as readable
    strings: ``NOT_APPLICABLE`` where a setting does not apply to the trial's mode, "null" for a
    missing value, floats as ``%g``."""
    names = [c for c in (SETTINGS if names is None else names) if c in trials.columns]
    modes = trials["mode"].fillna("")
    out = {}
    for name in names:
        text = trials[name].map(_text)
        mask = modes.map(lambda m, n=name: applies(n, m)).astype(bool)
        out[name] = text.where(mask, NOT_APPLICABLE)
    return pd.DataFrame(out, index=trials.index)


def mixed_settings(trials: pd.DataFrame, by: Sequence[str], *, exempt: Iterable[str] = ()) -> pd.DataFrame:
    """One row per cell (group of ``by``) whose trials differ in a setting not in ``by`` or
    ``exempt``: the cell's keys, ``setting`` and ``values`` (the distinct values, "; "-joined).
    Empty when every cell is homogeneous."""
    by = list(by)
    names = [c for c in SETTINGS if c in trials.columns and c not in by and c not in set(exempt)]
    rows = []
    if names and len(trials):
        text = settings(trials, names)
        for key, index in trials.groupby(by, dropna=False, sort=True).indices.items():
            part = text.iloc[index]
            key = key if isinstance(key, tuple) else (key,)
            for name in names:
                values = sorted(part[name].unique())
                if len(values) > 1:
                    rows.append({**dict(zip(by, key)), "setting": name, "values": "; ".join(values)})
    return pd.DataFrame(rows, columns=[*by, "setting", "values"])


def split_mixed(trials: pd.DataFrame, by: Sequence[str], *, exempt: Iterable[str] = ()) -> pd.DataFrame:
    """Separate variants for unlike trials: for each variant with a cell (group of ``by``, which
    must hold ``variant``) whose trials differ in a setting, that setting's value joins the label
    of every trial of the variant: "spectral-eigvals [lr=0.01]". Cells are homogeneous after."""
    if "variant" not in by:
        raise ValueError(f"split_mixed groups by {list(by)}, which must include 'variant' (label_variants)")
    mixed = mixed_settings(trials, by, exempt=exempt)
    if mixed.empty:
        return trials
    text = settings(trials, mixed["setting"].unique())
    variant = trials["variant"].astype("string").copy()
    for name, part in mixed.groupby("variant", sort=True):
        split_by = [s for s in SETTINGS if s in set(part["setting"])]
        mine = trials["variant"] == name
        suffix = text.loc[mine, split_by].apply(lambda r: ", ".join(f"{s}={v}" for s, v in r.items()), axis=1)
        variant[mine] = variant[mine] + " [" + suffix + "]"
    return trials.assign(variant=variant)


def refuse_mixed(trials: pd.DataFrame, by: Sequence[str], *, where: str, exempt: Iterable[str] = ()) -> None:
    """`AnalysisError` when a cell (group of ``by``) holds trials that differ in a setting: names
    the folders, the cell, the setting and its values."""
    mixed = mixed_settings(trials, by, exempt=exempt)
    if mixed.empty:
        return
    first = mixed.iloc[0]
    cell = ", ".join(f"{c}={first[c]}" for c in by)
    others = sorted(set(mixed["setting"]) - {first["setting"]})
    more = f" (and in {', '.join(others)})" if others else ""
    raise AnalysisError(f"{where}: the trials of one cell ({cell}) differ in {first['setting']} "
                        f"({first['values']}){more}; pooling them would mix unlike trials: analyse "
                        f"the results folders (or studies) one at a time")


def shared_settings(mode_a: str, mode_b: str, columns: Iterable[str]) -> list[str]:
    """The settings two trials of ``mode_a`` and ``mode_b`` must agree on to be compared (paired):
    those that apply to both modes, except the learning rates a study may tune per mode."""
    return [c for c in SETTINGS if c in set(columns) and c not in PER_MODE
            and applies(c, mode_a) and applies(c, mode_b)]


def _text(value) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "null"
    if isinstance(value, (float, np.floating)):
        return f"{value:g}"
    return str(value)
