"""Contracts of `spectral_study.data`: real IDX and CIFAR-10 files written into tmp_path, each
fault the loader must turn into a readable `DatasetError`, explicit paths searched alone, data
fingerprints and their cache, the numpy form for Ray, and the real Fashion-MNIST."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from spectral_study import data
from spectral_study.data import (
    DATASETS,
    Dataset,
    DatasetError,
    _fetch,
    _fingerprint,
    _formats,
    _sources,
    load_dataset,
    search_paths,
)

pytestmark = pytest.mark.usefixtures("isolated_home")  # conftest.py

IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    magic = (0x800 | array.ndim) if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(directory: Path, *, n_train=20, n_test=8, gz=True, seed=0) -> dict[str, np.ndarray]:
    """The four MNIST-style files; returns the arrays written, keyed by stem."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        write_idx(directory, stem, idx_bytes(array), gz=gz)
    return arrays


def write_idx(directory: Path, stem: str, raw: bytes, *, gz=True) -> Path:
    path = directory / (f"{stem}.gz" if gz else stem)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def cifar_batch(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"batch", b"labels": rng.integers(0, 10, n).tolist(),
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [b"img%d.png" % i for i in range(n)]}


def write_cifar(directory: Path, *, n=4, protocol=2) -> dict[str, dict]:
    directory.mkdir(parents=True, exist_ok=True)
    batches = {f"data_batch_{i}": cifar_batch(n, i) for i in range(1, 6)}
    batches["test_batch"] = cifar_batch(n, 99)
    for name, batch in batches.items():
        (directory / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    return batches


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# --- IDX (Fashion-MNIST, MNIST) -------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_idx_files_load_flat_unit_float32(tmp_path, gz):
    arrays = write_idx_set(tmp_path / "m", gz=gz)
    ds = load_dataset("mnist", path=tmp_path / "m", download=False)
    assert ds.x_train.shape == (20, 784) and ds.x_test.shape == (8, 784)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    expected = arrays["train-images-idx3-ubyte"].reshape(20, 784) / 255.0
    np.testing.assert_allclose(ds.x_train.numpy(), expected, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(ds.y_test.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert (ds.name, ds.n_classes, ds.n_features, ds.source) == ("mnist", 10, 784, str(tmp_path / "m"))


def test_missing_files_name_every_searched_path_and_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECTRAL_STUDY_DATA", str(tmp_path / "store"))
    write_idx_set(tmp_path / "store" / "mnist")
    (tmp_path / "store" / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError) as info:
        load_dataset("mnist", download=False)
    message = str(info.value)
    for directory in search_paths("mnist"):
        assert str(directory) in message
    assert f"{tmp_path / 'store' / 'mnist'}: incomplete: missing t10k-labels-idx1-ubyte[.gz]" in message
    assert "no such directory" in message
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/" in message and "SPECTRAL_STUDY_DATA" in message


# --- an explicit path is the user's word -----------------------------------------------------


@pytest.mark.parametrize("download", [False, True])
def test_incomplete_explicit_path_is_refused_even_with_a_complete_copy_elsewhere(tmp_path, monkeypatch,
                                                                                 download):
    # The bug of issue 12: a complete copy in the default search used to be loaded instead.
    write_idx_set(tmp_path / "store" / "mnist")
    monkeypatch.setenv("SPECTRAL_STUDY_DATA", str(tmp_path / "store"))
    files = {f"{s}.gz": md5(tmp_path / "store" / "mnist" / f"{s}.gz") for s in IDX_STEMS}
    monkeypatch.setitem(_sources._MIRRORS, "mnist", ((tmp_path / "store" / "mnist").as_uri() + "/", files))
    write_idx_set(tmp_path / "mine")
    (tmp_path / "mine" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError) as info:
        load_dataset("mnist", path=tmp_path / "mine", download=download)
    message = str(info.value)
    assert message.startswith(f"mnist: {tmp_path / 'mine'} is incomplete: missing t10k-labels-idx1-ubyte[.gz]")
    assert "searched alone" in message and str(tmp_path / "store") not in message
    assert not (tmp_path / "mine" / "t10k-labels-idx1-ubyte.gz").exists()  # nothing was fetched


def test_explicit_path_that_does_not_exist_is_refused(tmp_path):
    write_idx_set(tmp_path / "home" / ".cache" / "spectral-study" / "mnist")  # a complete copy to ignore
    with pytest.raises(DatasetError, match=rf"mnist: {tmp_path / 'typo'} is absent \(no such directory\)"):
        load_dataset("mnist", path=tmp_path / "typo", download=False)


def test_corrupt_file_in_explicit_path_is_an_error_not_a_fallback(tmp_path, monkeypatch):
    write_idx_set(tmp_path / "store")
    monkeypatch.setenv("SPECTRAL_STUDY_DATA", str(tmp_path / "store"))
    write_idx_set(tmp_path / "mine")
    (tmp_path / "mine" / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(DatasetError, match=rf"{tmp_path / 'mine' / 'train-labels-idx1-ubyte.gz'}: cannot read"):
        load_dataset("mnist", path=tmp_path / "mine", download=False)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_broken_gzip_is_a_dataset_error_naming_the_file(tmp_path, damage):
    write_idx_set(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2] if damage == "truncated" else b"\x1f\x8b" + b"\x00" * 64)
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz.*truncated or corrupt"):
        load_dataset("fashion-mnist", path=tmp_path, download=False)


def test_wrong_magic_number_says_expected_and_found(tmp_path):
    arrays = write_idx_set(tmp_path, gz=False)
    # an images file where the labels should be: magic 0x803, not 0x801
    write_idx(tmp_path, "train-labels-idx1-ubyte", idx_bytes(arrays["train-images-idx3-ubyte"]), gz=False)
    with pytest.raises(DatasetError, match=r"train-labels-idx1-ubyte: magic number 0x00000803, "
                                           r"expected 0x00000801"):
        load_dataset("mnist", path=tmp_path, download=False)


def test_truncated_payload_says_how_many_bytes_the_header_needs(tmp_path):
    arrays = write_idx_set(tmp_path)
    raw = idx_bytes(arrays["t10k-images-idx3-ubyte"])
    write_idx(tmp_path, "t10k-images-idx3-ubyte", raw[:-100])
    with pytest.raises(DatasetError, match=rf"t10k-images-idx3-ubyte.gz: holds {len(raw) - 100} bytes, "
                                           rf"but its header says \(8, 28, 28\), which needs {len(raw)}"):
        load_dataset("mnist", path=tmp_path, download=False)


def test_header_cut_short_is_a_dataset_error(tmp_path):
    write_idx_set(tmp_path)
    write_idx(tmp_path, "train-images-idx3-ubyte", (0x803).to_bytes(4, "big") + b"\x00\x00")
    with pytest.raises(DatasetError, match="end inside the 16-byte header"):
        load_dataset("mnist", path=tmp_path, download=False)


def test_image_and_label_counts_must_agree(tmp_path):
    write_idx_set(tmp_path)
    write_idx(tmp_path, "train-labels-idx1-ubyte", idx_bytes(np.zeros(19, np.uint8)))
    with pytest.raises(DatasetError, match="train split has 20 images but 19 labels"):
        load_dataset("mnist", path=tmp_path, download=False)


def test_labels_must_be_class_indices(tmp_path):
    write_idx_set(tmp_path)
    write_idx(tmp_path, "t10k-labels-idx1-ubyte", idx_bytes(np.full(8, 10, np.uint8)))
    with pytest.raises(DatasetError, match=r"t10k labels range over 10..10, expected 0..9"):
        load_dataset("mnist", path=tmp_path, download=False)


# --- search order ----------------------------------------------------------------------------


def test_search_paths_order(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECTRAL_STUDY_DATA", str(tmp_path / "store"))
    assert search_paths("mnist") == [
        tmp_path / "store" / "mnist", tmp_path / "store",
        tmp_path / "home" / ".cache" / "spectral-study" / "mnist", Path("/usr/share/datasets/mnist")]
    assert search_paths("mnist", tmp_path / "mine") == [tmp_path / "mine"]  # alone
    assert search_paths("synthetic") == []


def test_survey_says_what_each_search_path_holds(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECTRAL_STUDY_DATA", str(tmp_path / "store"))
    write_idx_set(tmp_path / "store" / "mnist")
    (tmp_path / "store" / "mnist" / "train-images-idx3-ubyte.gz").unlink()
    write_cifar(tmp_path / "home" / ".cache" / "spectral-study" / "cifar10" / "cifar-10-batches-py")
    assert [state for _, state in data.survey("mnist")] == [
        "incomplete: missing train-images-idx3-ubyte[.gz]", "absent (none of its files)",
        "absent (no such directory)", "absent (no such directory)"]
    assert [state for _, state in data.survey("cifar10")][2] == "complete (in cifar-10-batches-py/)"


def test_explicit_path_wins_over_environment(tmp_path, monkeypatch):
    write_idx_set(tmp_path / "mine", n_train=12)
    write_idx_set(tmp_path / "store" / "mnist", n_train=30)
    monkeypatch.setenv("SPECTRAL_STUDY_DATA", str(tmp_path / "store"))
    assert len(load_dataset("mnist", path=tmp_path / "mine", download=False).x_train) == 12
    assert len(load_dataset("mnist", download=False).x_train) == 30


def test_environment_directory_itself_is_searched_after_its_subfolder(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECTRAL_STUDY_DATA", str(tmp_path))
    write_idx_set(tmp_path, n_train=14)
    assert load_dataset("mnist", download=False).source == str(tmp_path)
    write_idx_set(tmp_path / "mnist", n_train=16)
    ds = load_dataset("mnist", download=False)
    assert (len(ds.x_train), ds.source) == (16, str(tmp_path / "mnist"))


def test_user_cache_is_searched(tmp_path):
    write_idx_set(tmp_path / "home" / ".cache" / "spectral-study" / "mnist")
    assert load_dataset("mnist", download=False).source.endswith(".cache/spectral-study/mnist")


# --- normalisation and bad arguments ---------------------------------------------------------


def test_standard_normalisation_uses_train_statistics(tmp_path):
    arrays = write_idx_set(tmp_path, n_train=200, n_test=50)
    arrays["train-images-idx3-ubyte"][:, 0, 0] = 7  # a constant pixel: std 0 must not give NaN
    write_idx(tmp_path, "train-images-idx3-ubyte", idx_bytes(arrays["train-images-idx3-ubyte"]))
    unit = load_dataset("mnist", path=tmp_path, download=False)
    std = load_dataset("mnist", path=tmp_path, normalize="standard", download=False)
    assert unit.x_train.min() >= 0 and unit.x_train.max() <= 1
    assert torch.allclose(std.x_train.mean(0), torch.zeros(784), atol=1e-5)
    assert torch.allclose(std.x_train[:, 1:].std(0, correction=0), torch.ones(783), atol=1e-4)
    assert torch.isfinite(std.x_test).all() and (std.x_train[:, 0] == 0).all()
    mean, sd = unit.x_train.mean(0), unit.x_train.std(0, correction=0).clamp_min(1e-6)
    assert torch.allclose(std.x_test, (unit.x_test - mean) / sd, atol=1e-4)


def test_unknown_normalisation_is_a_value_error_naming_the_choices():
    with pytest.raises(ValueError, match="unknown normalize 'zscore'; available: unit, standard"):
        load_dataset("synthetic", normalize="zscore")


def test_unknown_dataset_lists_the_available_ones():
    with pytest.raises(DatasetError, match="unknown dataset 'imagenet'; available: " + ", ".join(DATASETS)):
        load_dataset("imagenet")
    with pytest.raises(DatasetError, match="available"):
        search_paths("imagenet")


# --- synthetic -------------------------------------------------------------------------------


def test_synthetic_set_is_small_deterministic_and_in_unit_range():
    a = load_dataset("synthetic", synthetic_size=(300, 100), seed=3)
    b = load_dataset("synthetic", synthetic_size=(300, 100), seed=3)
    c = load_dataset("synthetic", synthetic_size=(300, 100), seed=4)
    assert a.x_train.shape == (300, 784) and a.x_test.shape == (100, 784)
    assert a.x_train.dtype == torch.float32 and a.y_train.dtype == torch.int64
    assert 0 <= a.x_train.min() and a.x_train.max() <= 1 and set(a.y_train.tolist()) == set(range(10))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    assert (a.source, a.n_classes, a.n_features) == ("synthetic", 10, 784)


def test_synthetic_size_is_checked():
    with pytest.raises(ValueError, match="synthetic_size must be two positive integers"):
        load_dataset("synthetic", synthetic_size=(0, 10))


def test_to_moves_every_tensor_and_keeps_the_rest():
    ds = load_dataset("synthetic", synthetic_size=(10, 5))
    moved = ds.to(torch.device("cpu"))
    assert isinstance(moved, Dataset) and moved.name == ds.name and moved.source == ds.source
    assert all(t.device.type == "cpu" for t in (moved.x_train, moved.y_train, moved.x_test, moved.y_test))
    with pytest.raises(AttributeError):
        ds.name = "other"  # frozen: a Dataset handed to several trials cannot be relabelled


# --- CIFAR-10 --------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("point_at", ["batches", "parent"])
def test_cifar_batches_load(tmp_path, protocol, point_at):
    batches = write_cifar(tmp_path / "cifar-10-batches-py", protocol=protocol)
    path = tmp_path / "cifar-10-batches-py" if point_at == "batches" else tmp_path
    ds = load_dataset("cifar10", path=path, download=False)
    assert ds.x_train.shape == (20, 3072) and ds.x_test.shape == (4, 3072) and ds.n_features == 3072
    np.testing.assert_allclose(ds.x_train[4:8].numpy(), batches["data_batch_2"][b"data"] / 255.0, atol=1e-7)
    assert ds.y_test.tolist() == batches["test_batch"][b"labels"]
    assert ds.source == str(tmp_path / "cifar-10-batches-py")


def test_cifar_tarball_is_extracted_beside_itself(tmp_path):
    write_cifar(tmp_path / "src" / "cifar-10-batches-py")
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    ds = load_dataset("cifar10", path=tmp_path, download=False)
    assert ds.source == str(tmp_path / "cifar-10-batches-py") and len(ds.x_train) == 20
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".extract-")]


def test_cifar_tarball_with_escaping_member_is_refused(tmp_path):
    payload = b"owned"
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        member = tarfile.TarInfo("cifar-10-batches-py/../../escaped")
        member.size = len(payload)
        tar.addfile(member, io.BytesIO(payload))
    with pytest.raises(DatasetError, match=r"unsafe member 'cifar-10-batches-py/\.\./\.\./escaped'"):
        load_dataset("cifar10", path=tmp_path, download=False)
    assert not (tmp_path.parent / "escaped").exists()


class _Exploit:
    def __reduce__(self):
        return os.system, ("touch exploited",)


def test_malicious_cifar_pickle_is_refused_before_it_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_cifar(tmp_path)
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps({b"data": _Exploit(), b"labels": []}, protocol=2))
    with pytest.raises(DatasetError, match=r"data_batch_3: refers to the global (posix|os|nt)\.system"):
        load_dataset("cifar10", path=tmp_path, download=False)
    assert not (tmp_path / "exploited").exists()


def test_cifar_pickle_with_wrong_keys_is_refused(tmp_path):
    write_cifar(tmp_path)
    bad = {b"images": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 3]}
    (tmp_path / "test_batch").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(DatasetError, match=r"test_batch: expected a dict with keys b'data' and b'labels'.*"
                                           r"got \[\"b'images'\", \"b'labels'\"\]"):
        load_dataset("cifar10", path=tmp_path, download=False)


def test_cifar_batch_with_wrong_shapes_or_counts_is_refused(tmp_path):
    write_cifar(tmp_path)
    short = cifar_batch(4, 0) | {b"labels": [1, 2, 3]}
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(short, protocol=2))
    with pytest.raises(DatasetError, match="data_batch_1: the data_batch_1 split has 4 images but 3 labels"):
        load_dataset("cifar10", path=tmp_path, download=False)
    narrow = cifar_batch(4, 0) | {b"data": np.zeros((4, 100), np.uint8)}
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(narrow, protocol=2))
    with pytest.raises(DatasetError, match=r"expected uint8 data of shape \(N, 3072\).*\(4, 100\)"):
        load_dataset("cifar10", path=tmp_path, download=False)


def test_truncated_cifar_pickle_is_a_dataset_error(tmp_path):
    write_cifar(tmp_path)
    raw = (tmp_path / "data_batch_5").read_bytes()
    (tmp_path / "data_batch_5").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError, match="data_batch_5: cannot unpickle it.*truncated or corrupt"):
        load_dataset("cifar10", path=tmp_path, download=False)


# --- download --------------------------------------------------------------------------------


def test_download_keeps_a_file_only_if_its_checksum_matches(tmp_path):
    source = write_idx(tmp_path, "t10k-labels-idx1-ubyte", idx_bytes(np.arange(10, dtype=np.uint8)))
    good = _fetch._download(source.as_uri(), tmp_path / "dl" / "good.gz", md5(source), "mnist")
    assert good.read_bytes() == source.read_bytes()
    with pytest.raises(DatasetError, match=f"mnist: .* has MD5 {md5(source)}, expected 0{{32}}"):
        _fetch._download(source.as_uri(), tmp_path / "dl" / "bad.gz", "0" * 32, "mnist")
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["good.gz"]  # no temp left


def test_download_failure_is_a_dataset_error_chained_to_the_cause(tmp_path):
    url = (tmp_path / "absent.gz").as_uri()
    with pytest.raises(DatasetError, match="could not download .*absent.gz") as info:
        _fetch._download(url, tmp_path / "dl" / "absent.gz", "0" * 32, "mnist")
    assert isinstance(info.value.__cause__, OSError)
    assert list((tmp_path / "dl").iterdir()) == []


def test_load_downloads_from_the_mirror_table_into_the_data_dir(tmp_path, monkeypatch):
    arrays = write_idx_set(tmp_path / "mirror")
    files = {f"{s}.gz": md5(tmp_path / "mirror" / f"{s}.gz") for s in IDX_STEMS}
    monkeypatch.setitem(_sources._MIRRORS, "mnist", ((tmp_path / "mirror").as_uri() + "/", files))
    monkeypatch.setenv("SPECTRAL_STUDY_DATA", str(tmp_path / "store"))
    ds = load_dataset("mnist")
    assert ds.source == str(tmp_path / "store" / "mnist")
    np.testing.assert_array_equal(ds.y_train.numpy(), arrays["train-labels-idx1-ubyte"])
    assert sorted(p.name for p in (tmp_path / "store" / "mnist").iterdir()) == sorted([*files, _fingerprint._SIDECAR])


def test_failed_download_reports_search_and_download(tmp_path, monkeypatch):
    files = {f"{s}.gz": "0" * 32 for s in IDX_STEMS}
    monkeypatch.setitem(_sources._MIRRORS, "mnist", ((tmp_path / "empty").as_uri() + "/", files))
    with pytest.raises(DatasetError, match=r"(?s)mnist: data files not found.*Downloading failed: "
                                           r"mnist: could not download"):
        load_dataset("mnist")


# --- fingerprints ----------------------------------------------------------------------------


def manifest_fingerprint(directory: Path, stems) -> str:
    """The documented definition, computed independently of the code under test."""
    lines = []
    for stem in sorted(stems):
        path = directory / f"{stem}.gz" if (directory / f"{stem}.gz").exists() else directory / stem
        contents = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        lines.append(f"{hashlib.sha256(contents).hexdigest()}  {stem}\n")
    return "sha256:" + hashlib.sha256("".join(lines).encode()).hexdigest()[:16]


def test_fingerprint_is_the_documented_digest_of_the_contents(tmp_path):
    write_idx_set(tmp_path / "gz")
    write_idx_set(tmp_path / "raw", gz=False)
    ds = load_dataset("mnist", path=tmp_path / "gz", download=False)
    assert ds.fingerprint == manifest_fingerprint(tmp_path / "gz", IDX_STEMS)
    assert len(ds.fingerprint) == len("sha256:") + 16 and ds.normalize == "unit"
    # The same data, un-gzipped elsewhere: the same fingerprint (contents, not packaging).
    assert data.fingerprint("mnist", tmp_path / "raw") == ds.fingerprint


def test_copies_differing_by_one_byte_have_different_fingerprints(tmp_path):
    arrays = write_idx_set(tmp_path / "a")
    write_idx_set(tmp_path / "b")
    arrays["train-images-idx3-ubyte"][3, 14, 14] ^= 1  # one pixel, one bit
    write_idx(tmp_path / "b", "train-images-idx3-ubyte", idx_bytes(arrays["train-images-idx3-ubyte"]))
    a = load_dataset("mnist", path=tmp_path / "a", download=False)
    b = load_dataset("mnist", path=tmp_path / "b", download=False)
    assert a.fingerprint != b.fingerprint
    assert b.fingerprint == manifest_fingerprint(tmp_path / "b", IDX_STEMS)


def test_cifar_fingerprint_covers_the_six_batches(tmp_path):
    write_cifar(tmp_path / "a")
    write_cifar(tmp_path / "b")
    (tmp_path / "b" / "test_batch").write_bytes(pickle.dumps(cifar_batch(4, 100), protocol=2))
    a, b = (load_dataset("cifar10", path=tmp_path / d, download=False) for d in "ab")
    assert a.fingerprint == manifest_fingerprint(tmp_path / "a", _formats._CIFAR_BATCHES) != b.fingerprint


def test_second_load_is_served_from_the_sidecar_and_verify_never_trusts_it(tmp_path):
    write_idx_set(tmp_path)
    first = load_dataset("mnist", path=tmp_path, download=False).fingerprint
    sidecar = json.loads((tmp_path / _fingerprint._SIDECAR).read_text())
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    assert sidecar["files"][path.name] == {
        "size": path.stat().st_size, "mtime_ns": path.stat().st_mtime_ns,
        "sha256": hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()}
    # A new process (empty memory) with a doctored sidecar: the digest comes from the sidecar,
    # not from re-reading the file -- which is what makes a second load cheap.
    _fingerprint._DIGESTS.clear()
    sidecar["files"][path.name]["sha256"] = "0" * 64
    (tmp_path / _fingerprint._SIDECAR).write_text(json.dumps(sidecar))
    assert load_dataset("mnist", path=tmp_path, download=False).fingerprint != first
    # verify re-reads every file, and repairs the cache.
    result = data.verify("mnist", path=tmp_path)
    assert not result.intact and result.fingerprint is None  # 20 random images are not MNIST
    assert "shape (20, 28, 28), expected (60000, 28, 28)" in result.files[0].problem
    _fingerprint._DIGESTS.clear()
    assert load_dataset("mnist", path=tmp_path, download=False).fingerprint == first


def test_changed_file_is_rehashed(tmp_path):
    arrays = write_idx_set(tmp_path)
    first = load_dataset("mnist", path=tmp_path, download=False).fingerprint
    arrays["t10k-labels-idx1-ubyte"][0] = (arrays["t10k-labels-idx1-ubyte"][0] + 1) % 10
    path = write_idx(tmp_path, "t10k-labels-idx1-ubyte", idx_bytes(arrays["t10k-labels-idx1-ubyte"]))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # a later write
    assert load_dataset("mnist", path=tmp_path, download=False).fingerprint != first


def test_unwritable_data_directory_caches_in_the_home_cache(tmp_path):
    write_idx_set(tmp_path / "ro")
    (tmp_path / "ro" / _fingerprint._SIDECAR).mkdir()  # the sidecar cannot be written (tests run as root)
    ds = load_dataset("mnist", path=tmp_path / "ro", download=False)
    cached = list((tmp_path / "home" / ".cache" / "spectral-study" / "sha256").iterdir())
    assert len(cached) == 1 and json.loads(cached[0].read_text())["directory"] == str(tmp_path / "ro")
    _fingerprint._DIGESTS.clear()
    assert load_dataset("mnist", path=tmp_path / "ro", download=False).fingerprint == ds.fingerprint


def test_no_writable_cache_at_all_still_gives_the_fingerprint(tmp_path, monkeypatch):
    write_idx_set(tmp_path / "ro")
    (tmp_path / "ro" / _fingerprint._SIDECAR).mkdir()
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("HOME", str(tmp_path / "file" / "home"))  # mkdir fails: not a directory
    ds = load_dataset("mnist", path=tmp_path / "ro", download=False)
    assert ds.fingerprint == manifest_fingerprint(tmp_path / "ro", IDX_STEMS)


def test_synthetic_fingerprint_follows_its_generation_parameters():
    def fp(size, seed):
        return load_dataset("synthetic", synthetic_size=size, seed=seed).fingerprint

    assert fp((30, 10), 0) == fp((30, 10), 0)
    assert len({fp((30, 10), 0), fp((30, 10), 1), fp((31, 10), 0)}) == 3
    assert fp((30, 10), 0).startswith("sha256:")


def test_normalize_is_recorded():
    assert load_dataset("synthetic", synthetic_size=(20, 10), normalize="standard").normalize == "standard"


# --- the numpy form, for Ray's object store --------------------------------------------------


def test_to_arrays_and_back_keeps_everything_without_copying(tmp_path):
    write_idx_set(tmp_path)
    ds = load_dataset("mnist", path=tmp_path, normalize="standard", download=False)
    stored = ds.to_arrays()
    assert all(isinstance(a, np.ndarray) for a in stored["arrays"].values())
    assert np.shares_memory(stored["arrays"]["x_train"], ds.x_train.numpy())
    # As Ray hands them to a trial: unpickled out of band, read-only.
    arrays = {k: v.copy() for k, v in stored["arrays"].items()}
    for a in arrays.values():
        a.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the non-writable warning is expected and suppressed
        back = Dataset.from_arrays({**stored, "arrays": arrays})
    assert back.x_train.data_ptr() == arrays["x_train"].ctypes.data  # zero-copy
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(back, name), getattr(ds, name))
    assert (back.name, back.n_classes, back.source, back.fingerprint, back.normalize) == (
        ds.name, ds.n_classes, ds.source, ds.fingerprint, "standard")
    assert Dataset.from_arrays(pickle.loads(pickle.dumps(stored, protocol=5))).fingerprint == ds.fingerprint


def test_from_arrays_names_what_is_missing():
    stored = load_dataset("synthetic", synthetic_size=(10, 5)).to_arrays()
    del stored["fingerprint"], stored["arrays"]["y_test"]
    with pytest.raises(ValueError, match="missing fingerprint, arrays.y_test"):
        Dataset.from_arrays(stored)


# --- the real data ---------------------------------------------------------------------------


def test_real_fashion_mnist(fashion_mnist):
    """CI installs Debian's dataset-fashion-mnist; without it this fails with the loader's message."""
    ds = load_dataset("fashion-mnist", path=fashion_mnist.path, download=False)
    assert ds.source == str(fashion_mnist.path)
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.x_train.min() == 0 and ds.x_train.max() == 1 and ds.n_classes == 10
    assert torch.bincount(ds.y_train).tolist() == [6000] * 10
    assert torch.bincount(ds.y_test).tolist() == [1000] * 10
    assert (ds.fingerprint, ds.normalize) == (fashion_mnist.fingerprint, "unit")
    # /usr is the package manager's: the digests are cached in the user's cache, not beside the data.
    assert not (fashion_mnist.path / _fingerprint._SIDECAR).exists()
    assert list((Path.home() / ".cache" / "spectral-study" / "sha256").glob("*.json"))


def test_real_fashion_mnist_is_verified_against_the_published_checksums(fashion_mnist):
    """Debian re-compressed the files (their .gz MD5s differ); their contents are the published ones."""
    result = data.verify("fashion-mnist", path=fashion_mnist.path)
    assert result.intact, [c.problem for c in result.files]
    assert result.fingerprint == fashion_mnist.fingerprint
    assert [c.detail.split(",")[0] for c in result.files] == ["60000×28×28", "60000", "10000×28×28", "10000"]
