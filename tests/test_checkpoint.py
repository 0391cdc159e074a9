"""The checkpoint format: weights only, every tensor mapped to the CPU, so a checkpoint written
on a GPU node restores on a CPU-only node and continues the trial exactly."""
import copy

import pytest
import torch

from spectral_study.checkpoint import CHECKPOINT_FILE, CHECKPOINT_KEYS, load_checkpoint, save_checkpoint
from spectral_study.trial import run_trial

SMALL = {"dataset": "synthetic", "synthetic_size": [400, 100], "widths": [8], "epochs": 3,
         "mode": "spectral-full", "lr_eigvals": 0.05, "checkpoint_every": 1}


def _states() -> tuple[list[dict], dict]:
    states = []
    summary = run_trial(SMALL, lambda m, s: states.append(copy.deepcopy(s)))
    return states, summary


def test_saved_state_round_trips_and_continues_the_trial(tmp_path):
    states, full = _states()
    save_checkpoint(states[0], tmp_path)
    loaded = load_checkpoint(tmp_path)
    assert set(loaded) == set(CHECKPOINT_KEYS) - {"members"} and "summary" not in loaded  # members: packed trials
    resumed = run_trial(SMALL, checkpoint=loaded)
    assert [h["test_accuracy"] for h in resumed["history"]] == [h["test_accuracy"] for h in full["history"]]


def test_a_checkpoint_whose_tensors_name_cuda_restores_on_a_cpu_only_machine(tmp_path, monkeypatch):
    """Written as a CUDA node writes it: every storage tagged "cuda:0" in the file. Plain
    torch.load refuses it on this CPU-only machine; load_checkpoint maps it to the CPU."""
    states, full = _states()
    # torch.save records each storage's device through location_tag; tag them as a GPU would.
    monkeypatch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
    save_checkpoint(states[0], tmp_path)
    monkeypatch.undo()
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    loaded = load_checkpoint(tmp_path)
    tensors = [t for t in _tensors(loaded)]
    assert tensors and all(t.device.type == "cpu" for t in tensors)
    resumed = run_trial(SMALL, checkpoint=loaded)
    assert [h["test_accuracy"] for h in resumed["history"]] == [h["test_accuracy"] for h in full["history"]]


def test_the_file_holds_no_pickled_code(tmp_path):
    """weights_only=True loads it: only tensors, numbers, strings and containers inside."""
    states, _ = _states()
    save_checkpoint(states[-1], tmp_path)
    torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True, map_location="cpu")


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


def test_a_folder_is_a_whole_checkpoint_only_with_its_state_file(tmp_path):
    import pyarrow.fs as pafs

    from spectral_study.checkpoint import is_whole

    local = pafs.LocalFileSystem()
    assert not is_whole(local, str(tmp_path / "missing"))
    assert not is_whole(local, str(tmp_path))  # the folder alone
    save_checkpoint({"elapsed_seconds": 1.0}, tmp_path)
    assert is_whole(local, str(tmp_path))
