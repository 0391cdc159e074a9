"""Analysis scripts: read a study's Parquet results, aggregate over seeds, write figures and tables.

    python -m analysis.curves results/fmnist-widths-relu [more results dirs] [--out DIR]
    python -m analysis.claims results/fmnist-widths-relu
    python -m analysis.pruning results/fmnist-pruning-tanh [--epoch N]
    python -m analysis.pruning_epochs results/fmnist-pruning-epochs
    python -m analysis.weights results/fmnist-perceptron-weights
    python -m analysis.lr_tuning results/fmnist-lr-tuning

`analysis.stats` holds the shared pure functions (intervals honest at small n, per-group
summaries, input checks, loading several results folders); `analysis.cells` says which trials
are replicates of one cell (variant labels, the settings that must match, completed trials);
`analysis._report` the command line and the Markdown, CSV and PNG output. Each script turns them
into PNG figures, Markdown tables and a CSV of the same numbers. Only these scripts import
matplotlib and scipy.
"""
