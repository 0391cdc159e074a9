"""A trial's checkpoint on disk: what `run_trial` needs to continue, nothing more.

    save_checkpoint(state, directory)     # the state run_trial reported
    state = load_checkpoint(directory)    # on any node, GPU or not

The file holds tensors, numbers, strings, lists and dicts only, so it loads with
``torch.load(weights_only=True)`` (no pickled code runs), and every tensor is mapped to the CPU
as it loads: a checkpoint written on a GPU node restores on a CPU-only node, and `run_trial`
moves the state to its own device (``load_state_dict`` copies into parameters wherever they live).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

CHECKPOINT_FILE = "state.pt"
# What a reported state carries that is worth keeping; the summary is reported, not restored.
# "trainers" holds one state per seed, the same whether the seeds trained stacked or one by
# one; "members" (trials that pack their seeds) each seed's own history and pruning rows.
CHECKPOINT_KEYS = ("trainers", "history", "elapsed_seconds", "attempts", "pruning", "members")


def save_checkpoint(state: dict, directory: str | os.PathLike) -> Path:
    """Write the checkpointable part of ``state`` to ``directory/state.pt``."""
    path = Path(directory) / CHECKPOINT_FILE
    torch.save({key: state[key] for key in CHECKPOINT_KEYS if key in state}, path)
    return path


def is_whole(filesystem, path: str) -> bool:
    """Whether the checkpoint folder ``path`` on a pyarrow ``filesystem`` (local or S3) holds its
    state file. A driver killed while Tune deleted a replaced checkpoint can leave the folder
    without it: on S3 the folder's marker object outlived ``state.pt`` (seen in a resumed study)."""
    import pyarrow.fs as pafs

    return filesystem.get_file_info(f"{path.rstrip('/')}/{CHECKPOINT_FILE}").type == pafs.FileType.File


def load_checkpoint(directory: str | os.PathLike) -> dict:
    """The state saved by `save_checkpoint`, every tensor on the CPU."""
    return torch.load(Path(directory) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
