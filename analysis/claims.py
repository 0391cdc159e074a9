"""Paired comparisons for the paper's claims C1 and C2, seed by seed, with bootstrap intervals.

    python analysis/claims.py results/fmnist-widths-relu [results/fmnist-widths-linear ...] [--out DIR]

C1: spectral-eigvals minus dense-restricted (the same number of free parameters);
C2: spectral-full minus dense. For each dataset, activation and width, the difference of final
test accuracy between the two modes trained with the same seed, its mean and 95 % bootstrap
interval over seeds, and how many seeds the first mode won. Writes claims.md and claims.csv.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `analysis` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from analysis import _report  # noqa: E402
from analysis.stats import AnalysisError, bootstrap_ci, format_estimate, load, require_columns  # noqa: E402

CLAIMS = {"C1": ("spectral-eigvals", "dense-restricted"), "C2": ("spectral-full", "dense")}
KEYS = ["dataset", "activation", "widths", "eigenvalues_key", "seed"]
HINT = "run the width studies (studies/fmnist-widths-relu.yaml, studies/fmnist-widths-linear.yaml)"


def paired_differences(trials: pd.DataFrame, *, reps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per claim, dataset, activation and widths: the mean paired difference and its CI."""
    done = trials[trials["status"] == "completed"].copy()
    # dense has no eigenvalues; pair it with the spectral trials whatever their set
    done["eigenvalues_key"] = done["eigenvalues"].where(~done["mode"].isin(["dense"]), "any")
    rows = []
    for claim, (first, second) in CLAIMS.items():
        a = done[done["mode"] == first]
        b = done[done["mode"] == second]
        if second == "dense":
            a = a.assign(eigenvalues_key="any")
        pairs = a.merge(b, on=KEYS, suffixes=("_a", "_b"))
        for (dataset, activation, widths), group in pairs.groupby(["dataset", "activation", "widths"]):
            diff = (group["final_test_accuracy_a"] - group["final_test_accuracy_b"]).to_numpy()
            point, low, high = bootstrap_ci(diff, reps=reps, seed=seed)
            rows.append({"claim": claim, "comparison": f"{first} - {second}", "dataset": dataset,
                         "activation": activation, "widths": widths,
                         "width": int(str(widths).split("-")[0]) if widths else 0,
                         "n": len(diff), "mean": point, "ci_low": low, "ci_high": high,
                         "wins": int((diff > 0).sum()),
                         "trainable_a": int(group["trainable_params_a"].iloc[0]),
                         "trainable_b": int(group["trainable_params_b"].iloc[0])})
    if not rows:
        raise AnalysisError(f"no seed has both modes of a claim; {HINT}")
    return pd.DataFrame(rows).sort_values(["claim", "dataset", "activation", "width"]).reset_index(drop=True)


def main(argv=None) -> int:
    args = _report.parse_args(argv, __doc__.splitlines()[0])

    def body() -> list[Path]:
        trials = load(args.results)["trials"]
        require_columns(trials, ["dataset", "mode", "widths", "activation", "eigenvalues", "seed", "status",
                                 "final_test_accuracy", "trainable_params"], "trials", HINT,
                        where=_report.where(args.results))
        table = paired_differences(trials, reps=args.reps, seed=args.seed)
        shown = table.assign(difference=[format_estimate(r.mean, r.ci_low, r.ci_high, r.n)
                                         for r in table.itertuples()],
                             wins=[f"{r.wins}/{r.n}" for r in table.itertuples()])
        sections = [(f"{claim}: {part['comparison'].iloc[0]}, {dataset}, {activation}",
                     part.set_index("widths")[["difference", "wins", "trainable_a", "trainable_b"]])
                    for (claim, dataset, activation), part in shown.groupby(["claim", "dataset", "activation"])]
        intro = (f"Results: {_report.where(args.results)}. Paired by seed: difference of final test "
                 f"accuracy, mean [95 % percentile-bootstrap CI over seeds, {args.reps} resamples, "
                 f"seed {args.seed}] (n seeds); wins: seeds where the first mode scored higher.")
        out = args.out
        return [_report.write_csv(out / "claims.csv", table),
                _report.write_markdown(out / "claims.md", "Claims C1 and C2, paired by seed", intro, sections)]

    return _report.run(body)


if __name__ == "__main__":
    sys.exit(main())
