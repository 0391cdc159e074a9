"""Paired comparisons for the paper's claims C1 and C2, trial against trial of the same seed.

    python -m analysis.claims results/fmnist-widths-relu [results/fmnist-widths-linear ...] [--out DIR]

C1: spectral-eigvals minus dense-restricted (the same number of free parameters); C2:
spectral-full minus dense. Two completed trials are a pair when they share the seed, the
dataset, activation and hidden widths, and every setting that applies to both modes
(`analysis.cells.shared_settings`: the eigenvalue set for C1, epochs, optimiser, batch size,
bias, normalisation, the data's fingerprint, the results folder…); their learning rates may
differ (a study tunes them per mode). Each subset seed of dense-restricted is a comparison of
its own, and trials of one mode's cell that differ in a setting (φ's initialisation, say) are
split into variants compared separately (`analysis.cells.split_mixed`): a seed is one pair,
never counted once per subset. A seed that would still pair with two trials is refused.

For each comparison, dataset, activation and widths: the difference of final test accuracy,
its mean over seeds with a 95 % interval (a t-interval up to 10 seeds, the percentile
bootstrap above) and the seeds the first mode won. Writes claims.md and claims.csv.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from analysis import _report, cells
from analysis.stats import AnalysisError, format_estimate, interval, load, require_columns

CLAIMS = {"C1": ("spectral-eigvals", "dense-restricted"), "C2": ("spectral-full", "dense")}
AXES = ["dataset", "activation", "widths"]
CELL = AXES + ["variant"]
HINT = "run the width studies (studies/fmnist-widths-relu.yaml, studies/fmnist-widths-linear.yaml)"
_COLUMNS = ["dataset", "mode", "widths", "width", "activation", "eigenvalues", "seed", "subset_seed", "status",
            "final_test_accuracy", "trainable_params"]


def paired_differences(trials: pd.DataFrame, *, method: str = "auto", reps: int = 2000, seed: int = 0,
                       where: str = "results") -> pd.DataFrame:
    """One row per claim, pair of variants, dataset, activation and widths: n seeds, the mean
    paired difference (first − second) and its interval, and the seeds the first mode won."""
    done = cells.split_mixed(cells.label_variants(cells.completed(trials), by_subset=True), CELL)
    text = cells.settings(done)
    done = pd.concat([done, text.add_prefix("setting:")], axis=1)
    rows = []
    for claim, (first, second) in CLAIMS.items():
        shared = ["setting:" + c for c in cells.shared_settings(first, second, text.columns) if c not in AXES]
        on = AXES + ["seed"] + shared
        pairs = done[done["mode"] == first].merge(done[done["mode"] == second], on=on, suffixes=("_a", "_b"))
        for (variant_a, variant_b, *axes), group in pairs.groupby(["variant_a", "variant_b"] + AXES, sort=True):
            repeated = group[group.duplicated("seed", keep=False)]
            if len(repeated):
                seed_value = repeated["seed"].iloc[0]
                ids = sorted(set(repeated["trial_id_a"]) | set(repeated["trial_id_b"]))
                raise AnalysisError(f"{where}: {claim}: seed {seed_value} pairs more than once between "
                                    f"{variant_a} and {variant_b} ({', '.join(map(str, axes))}): trials "
                                    f"{', '.join(ids)} are alike but for their seed; drop the duplicates")
            diff = (group["final_test_accuracy_a"] - group["final_test_accuracy_b"]).to_numpy(dtype=float)
            estimate = interval(diff, method=method, reps=reps, seed=seed)
            rows.append({"claim": claim, "comparison": f"{variant_a} - {variant_b}",
                         "variant_a": variant_a, "variant_b": variant_b, **dict(zip(AXES, axes)),
                         "width": int(group["width_a"].iloc[0]),
                         "n": len(diff), "mean": estimate.point, "ci_low": estimate.low,
                         "ci_high": estimate.high, "interval": estimate.label, "wins": int((diff > 0).sum()),
                         "trainable_a": int(group["trainable_params_a"].iloc[0]),
                         "trainable_b": int(group["trainable_params_b"].iloc[0])})
    if not rows:
        raise AnalysisError(f"{where}: no seed has both modes of a claim run alike; {HINT}")
    return (pd.DataFrame(rows).sort_values(["claim", "comparison", "dataset", "activation", "width"])
            .reset_index(drop=True))


def main(argv=None) -> int:
    args = _report.parse_args(argv, __doc__.splitlines()[0])

    def body() -> list[Path]:
        where = _report.where(args.results)
        trials = load(args.results)["trials"]
        require_columns(trials, _COLUMNS, "trials", HINT, where=where)
        table = paired_differences(trials, method=args.interval, reps=args.reps, seed=args.seed, where=where)
        shown = table.assign(difference=[format_estimate(r.mean, r.ci_low, r.ci_high, r.n)
                                         for r in table.itertuples()],
                             wins=[f"{r.wins}/{r.n}" for r in table.itertuples()])
        sections = [(f"{claim}: {comparison}, {dataset}, {activation}",
                     part.set_index("widths")[["difference", "wins", "trainable_a", "trainable_b"]])
                    for (claim, comparison, dataset, activation), part
                    in shown.groupby(["claim", "comparison", "dataset", "activation"], sort=True)]
        intro = (f"Results: {where}. Paired by seed (and by every setting both modes share): "
                 f"difference of final test accuracy, mean "
                 f"[{_report.interval_note(table['interval'], reps=args.reps, seed=args.seed, over='seeds')}] "
                 f"(n seeds); wins: seeds where the first mode scored higher.")
        out = args.out
        return [_report.write_csv(out / "claims.csv", table),
                _report.write_markdown(out / "claims.md", "Claims C1 and C2, paired by seed", intro, sections)]

    return _report.run(body)


if __name__ == "__main__":
    sys.exit(main())
