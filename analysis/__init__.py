"""Analysis scripts: read a study's Parquet results, aggregate over seeds, write figures and tables.

    python analysis/curves.py results/fmnist-widths-relu [more results dirs] [--out DIR]
    python analysis/pruning.py results/fmnist-pruning-tanh
    python analysis/weights.py results/fmnist-perceptron

`analysis.stats` holds the shared pure functions (bootstrap intervals, per-group summaries,
input checks, loading several results folders); each script turns them into PNG figures,
Markdown tables and a CSV of the same numbers. Only these scripts import matplotlib and scipy.
"""
