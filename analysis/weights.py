"""Distribution of a perceptron's trained weights W[i, j], each learning mode against dense training.

    python -m analysis.weights results/fmnist-perceptron [more results dirs] [--out DIR] [--bins 60]

Claim C3 of SCIENCE.md: training only the N1 + N2 eigenvalues of a perceptron gives weights
distributed much like unrestricted dense training, while dense training restricted to as many
random weights gives a very different distribution, whichever subset is drawn. Needs perceptron
trials (no hidden layer), whose every weight the results keep (table `weights`).

For each trial, the distance of its weights to the reference, the pooled weights of the dense
trials run like it (the same settings where they apply to both modes, `analysis.cells.
shared_settings`: data, epochs, optimiser, batch size, bias, results folder…) and of the same
seed (of every other such dense seed when none shares it; a dense trial is compared with the
other dense trials, which measures seed-to-seed variation): the Wasserstein-1 distance and the
two-sample Kolmogorov-Smirnov statistic, for all its weights and for its trainable subset alone
(dense-restricted freezes most of its weights at their initial values). Completed trials only;
each subset seed of dense-restricted is a variant of its own. Trials of one variant that differ
in a setting (`analysis.cells`) are refused with an error naming it: the reference would be
ambiguous, so analyse such results folders one at a time. Intervals over trials: a t-interval
up to 10 trials, the percentile bootstrap above. Writes under --out (default
<first RESULTS_DIR>/analysis):

    weights_<dataset>.png       density histograms, a panel per mode (dense in grey in each)
    weights.md                  distances per mode (and subset seed): mean [low, high] (n trials)
    weights.csv                 the same summary, tidy
    weights_trials.csv          the distances of every trial
    weights_histograms.csv      the histograms drawn (bin edges, density): the figure's data
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import _report, cells
from analysis.stats import (
    KEYS,
    AnalysisError,
    format_estimate,
    load,
    require_columns,
    summarize,
)

REFERENCE_MODE = "dense"
PERCEPTRON_STUDY = "studies/fmnist-perceptron-weights.yaml"
HINT = (f"run a perceptron study (model: widths: [[]], modes: [spectral-eigvals, dense, "
        f"dense-restricted], e.g. {PERCEPTRON_STUDY}) to produce the weights table")
BY = ["dataset", "variant", "mode", "subset_seed"]
DISTANCES = {"wasserstein": "W1", "ks": "KS"}
_TRIAL_COLUMNS = ["dataset", "mode", "eigenvalues", "seed", "subset_seed", "n_hidden_layers", "status"]
CELL = ["dataset", "variant"]


def perceptron_weights(tables: dict[str, pd.DataFrame], where: str) -> pd.DataFrame:
    """The weights of completed perceptron trials, labelled with their trial's config."""
    trials, weights = tables["trials"], tables["weights"]
    require_columns(trials, _TRIAL_COLUMNS, "trials", HINT, where=where)
    done = cells.completed(trials)
    perceptrons = done[done["n_hidden_layers"] == 0]
    if perceptrons.empty:
        raise AnalysisError(f"{where}: no completed perceptron trial (no hidden layer) in the trials "
                            f"table, so no weights to compare; {HINT}")
    require_columns(weights, ["layer", "row", "col", "weight", "trainable"], "weights", HINT, where=where)
    labelled = cells.label_variants(perceptrons, by_subset=True)
    cells.refuse_mixed(labelled, CELL, where=where)
    settings = [c for c in cells.SETTINGS if c in labelled.columns and c not in KEYS + _TRIAL_COLUMNS]
    labelled = labelled[KEYS + _TRIAL_COLUMNS[:-2] + ["variant"] + settings]
    data = weights.merge(labelled, on=KEYS, how="inner")
    if data.empty:
        raise AnalysisError(f"{where}: the weights table holds no weights of a completed perceptron "
                            f"trial; {HINT}")
    if not (data["mode"] == REFERENCE_MODE).any():
        raise AnalysisError(f"{where}: no {REFERENCE_MODE} perceptron trial to compare with (modes "
                            f"found: {sorted(data['mode'].unique())}); {HINT}")
    return data


def trial_distances(data: pd.DataFrame) -> pd.DataFrame:
    """One row per trial: its reference and the W1 and KS distances of all its weights, and of its
    trainable subset, to the reference's weights."""
    from scipy.stats import ks_2samp, wasserstein_distance

    rows = []
    for dataset, part in data.groupby("dataset", sort=True):
        trials = {key: frame for key, frame in part.groupby(KEYS, sort=True)}
        meta = cells.settings(part.drop_duplicates(KEYS).set_index(KEYS))
        dense = {key: frame for key, frame in trials.items() if frame["mode"].iloc[0] == REFERENCE_MODE}
        for key, frame in trials.items():
            seed = frame["seed"].iloc[0]
            shared = cells.shared_settings(frame["mode"].iloc[0], REFERENCE_MODE, meta.columns)
            others = {k: f for k, f in dense.items()
                      if k != key and (meta.loc[k, shared] == meta.loc[key, shared]).all()}
            same_seed = [f for f in others.values() if f["seed"].iloc[0] == seed]
            pool, kind = (same_seed, "dense, same seed") if same_seed else (list(others.values()), "dense, pooled")
            weights = frame["weight"].to_numpy(dtype=float)
            trainable = weights[frame["trainable"].fillna(False).to_numpy(dtype=bool)]
            row = {**dict(zip(KEYS, key)), "dataset": dataset,
                   **{c: frame[c].iloc[0] for c in ["variant", "mode", "eigenvalues", "seed", "subset_seed"]},
                   "reference": f"{kind} ({len(pool)} trial{'s' if len(pool) != 1 else ''})" if pool else "none",
                   "n_weights": weights.size, "n_trainable": trainable.size}
            reference = np.concatenate([f["weight"].to_numpy(dtype=float) for f in pool]) if pool else None
            for suffix, sample in (("", weights), ("_trainable", trainable)):
                usable = reference is not None and sample.size > 0
                row["wasserstein" + suffix] = wasserstein_distance(sample, reference) if usable else np.nan
                row["ks" + suffix] = ks_2samp(sample, reference).statistic if usable else np.nan
            rows.append(row)
    result = pd.DataFrame(rows)
    return result.astype({"seed": "Int64", "subset_seed": "Int64"})


def summarize_distances(per_trial: pd.DataFrame, *, method: str = "auto", reps: int = 2000,
                        seed: int = 0) -> pd.DataFrame:
    """Tidy: one row per dataset, variant, weights ("all" or "trainable") and distance, with the
    mean over trials and its interval (`analysis.stats.interval`)."""
    parts = []
    for subset, suffix in (("all", ""), ("trainable", "_trainable")):
        for distance in DISTANCES:
            summary = summarize(per_trial, BY, distance + suffix, status=None, method=method, reps=reps, seed=seed)
            parts.append(summary.assign(weights=subset, distance=distance))
    result = pd.concat(parts, ignore_index=True)
    return result[BY + ["weights", "distance", "n", "n_nan", "mean", "ci_low", "ci_high", "interval"]]


def histograms(data: pd.DataFrame, *, bins: int = 60) -> pd.DataFrame:
    """Density histograms of every variant's pooled weights (and of its trainable subset where
    some are frozen), on bins shared within a dataset; values beyond the 0.1 / 99.9 % quantiles
    fall into the edge bins, so every weight counts."""
    rows = []
    for dataset, part in data.groupby("dataset", sort=True):
        values = part["weight"].to_numpy(dtype=float)
        low, high = np.quantile(values, [0.001, 0.999])
        if not high > low:
            low, high = low - 0.5, high + 0.5
        edges = np.linspace(low, high, bins + 1)
        for variant, frame in part.groupby("variant", sort=True):
            weights = frame["weight"].to_numpy(dtype=float)
            trainable = frame["trainable"].fillna(False).to_numpy(dtype=bool)
            partly_trained = 0 < trainable.sum() < trainable.size
            subsets = [("all", weights)] + ([("trainable", weights[trainable])] if partly_trained else [])
            for subset, sample in subsets:
                density, _ = np.histogram(np.clip(sample, low, high), bins=edges, density=True)
                rows += [{"dataset": dataset, "variant": variant, "mode": frame["mode"].iloc[0],
                          "weights": subset, "bin_left": a, "bin_right": b, "density": d}
                         for a, b, d in zip(edges[:-1], edges[1:], density)]
    return pd.DataFrame(rows)


def table(summary: pd.DataFrame, per_trial: pd.DataFrame, dataset: str) -> pd.DataFrame:
    part = summary[summary["dataset"] == dataset]
    part = part.assign(cell=part.apply(_report.cell, axis=1),
                       column=part["distance"].map(DISTANCES) + " (" + part["weights"] + " weights)")
    wide = part.pivot(index="variant", columns="column", values="cell")
    columns = [f"{DISTANCES[d]} ({w} weights)" for w in ("all", "trainable") for d in DISTANCES]
    trials = per_trial[per_trial["dataset"] == dataset].groupby("variant")
    wide = wide.reindex(columns=columns).assign(
        **{"trainable share": trials.apply(lambda f: f"{f.n_trainable.sum() / f.n_weights.sum():.1%}"),
           "reference": trials["reference"].agg(lambda r: "; ".join(sorted(set(r))))})
    wide = wide.reindex(sorted(wide.index, key=_report.mode_rank))
    wide.index.name = "mode"
    return wide


def plot(hist: pd.DataFrame, summary: pd.DataFrame, dataset: str):
    plt = _report.pyplot()
    data = hist[hist["dataset"] == dataset]
    reference = data[(data["variant"] == REFERENCE_MODE) & (data["weights"] == "all")]
    variants = [v for v in sorted(data["variant"].unique(), key=_report.mode_rank) if v != REFERENCE_MODE]
    variants = variants or [REFERENCE_MODE]
    ncols = min(3, len(variants))
    nrows = -(-len(variants) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.4 * ncols, 5.0 * nrows), squeeze=False)
    for index, (ax, variant) in enumerate(zip(axes.flat, variants)):
        edges = np.append(reference["bin_left"].to_numpy(), reference["bin_right"].iloc[-1])
        ax.stairs(reference["density"].to_numpy(), edges, fill=True, color="0.75",
                  label=f"{REFERENCE_MODE}, all seeds")
        mine = data[data["variant"] == variant]
        mode = mine["mode"].iloc[0]
        color = _report.mode_color(mode, index)
        for subset, style in (("all", "-"), ("trainable", "--")):
            curve = mine[mine["weights"] == subset]
            if curve.empty or (variant == REFERENCE_MODE and subset == "all"):
                continue
            ax.stairs(curve["density"].to_numpy(), edges, color=color if subset == "all" else "black",
                      linestyle=style, linewidth=1.6,
                      label="trainable subset" if subset == "trainable" else "all weights")
        ax.text(0.0, -0.2, _distance_note(summary, dataset, variant), transform=ax.transAxes,
                va="top", ha="left", fontsize=8, family="monospace")
        ax.set_title(variant)
        ax.set_xlabel("weight W[i, j]  (edge bins hold the 0.1 % tails)")
        ax.set_ylabel("density")
        ax.legend(fontsize=8, loc="upper right")
    for ax in list(axes.flat)[len(variants):]:
        ax.set_visible(False)
    labels = summary.loc[summary["dataset"] == dataset, "interval"]
    fig.suptitle(f"{dataset}: perceptron weights after training, each mode against dense (grey)\n"
                 f"distance to dense: mean [{_report.interval_names(labels)}] "
                 f"(n trials)", fontsize=11)
    fig.tight_layout()
    return fig


def _distance_note(summary: pd.DataFrame, dataset: str, variant: str) -> str:
    part = summary[(summary["dataset"] == dataset) & (summary["variant"] == variant)]
    lines = []
    for subset in ("all", "trainable"):
        for distance, short in DISTANCES.items():
            row = part[(part["weights"] == subset) & (part["distance"] == distance)]
            if row.empty or row["n"].iloc[0] == 0:
                continue
            r = row.iloc[0]
            text = format_estimate(r["mean"], r["ci_low"], r["ci_high"], int(r["n"]), digits=3)
            lines.append(f"{short:<2} to dense, {subset + ' weights:':<18} {text}")
    return "\n".join(lines) or "no reference"


def main(argv=None) -> int:
    def extra(parser):
        parser.add_argument("--bins", type=int, default=60, help="histogram bins (default 60)")

    args = _report.parse_args(argv, __doc__.splitlines()[0], extra)

    def body() -> list[Path]:
        where = _report.where(args.results)
        data = perceptron_weights(load(args.results), where)
        per_trial = trial_distances(data)
        summary = summarize_distances(per_trial, method=args.interval, reps=args.reps, seed=args.seed)
        hist = histograms(data, bins=args.bins)
        out = args.out
        written = [_report.write_csv(out / "weights.csv", summary),
                   _report.write_csv(out / "weights_trials.csv", per_trial),
                   _report.write_csv(out / "weights_histograms.csv", hist)]
        intro = (f"Results: {where}. Completed perceptron trials. Per trial: Wasserstein-1 (W1) and "
                 f"Kolmogorov-Smirnov (KS) distance of its weights to the pooled weights of the dense "
                 f"trials run with the same settings and seed (of all other such dense trials when "
                 f"none shares its seed; dense itself is compared with the other dense seeds). Each "
                 f"subset seed of dense-restricted is its own row. 'trainable weights': only the "
                 f"weights the mode trained (dense-restricted keeps the rest at their initial "
                 f"values). Cells: mean [{_report.interval_note(summary['interval'], reps=args.reps, seed=args.seed)}]"
                 f" (n trials).")
        sections = [(dataset, table(summary, per_trial, dataset)) for dataset in sorted(summary["dataset"].unique())]
        written.append(_report.write_markdown(out / "weights.md", "Trained perceptron weights vs dense",
                                              intro, sections))
        for dataset in sorted(hist["dataset"].unique()):
            written.append(_report.save_figure(plot(hist, summary, dataset),
                                               out / f"weights_{_report.slug(dataset)}.png"))
        return written

    return _report.run(body)


if __name__ == "__main__":
    sys.exit(main())
