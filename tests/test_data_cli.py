"""Contracts of `spectral-study data list | verify | fetch`: what each prints and its exit code
(0 ok, 1 missing or corrupt, 2 bad input), on copies of the real Fashion-MNIST made in tmp_path."""
from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import pytest

from spectral_study import data
from spectral_study.cli import main
from spectral_study.data import _sources

pytestmark = pytest.mark.usefixtures("isolated_home")  # conftest.py

CLOSED_PORT = "http://127.0.0.1:9"  # the discard port, closed here: refused at once, as offline


@pytest.fixture
def fashion_copy(tmp_path, fashion_mnist) -> Path:
    """A copy of the real Fashion-MNIST that a test may damage."""
    return Path(shutil.copytree(fashion_mnist.path, tmp_path / "fashion-mnist"))


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["data", *argv])
    out, err = capsys.readouterr()
    return code, out, err


# --- list ------------------------------------------------------------------------------------


def test_list_shows_every_search_path_in_order_and_what_it_holds(tmp_path, monkeypatch, capsys, fashion_mnist):
    monkeypatch.setenv("SPECTRAL_STUDY_DATA", str(tmp_path / "store"))
    (tmp_path / "store" / "mnist").mkdir(parents=True)
    shutil.copy(fashion_mnist.path / "train-labels-idx1-ubyte.gz", tmp_path / "store" / "mnist")
    code, out, _ = run(capsys, "list")
    assert code == 0
    lines = out.splitlines()
    mnist = lines[lines.index("mnist") + 1: lines.index("cifar10")]
    assert [line.split()[0] for line in mnist] == [str(d) for d in data.search_paths("mnist")]
    assert "incomplete: missing train-images-idx3-ubyte[.gz], t10k-images-idx3-ubyte[.gz], " \
           "t10k-labels-idx1-ubyte[.gz]" in mnist[0]
    assert "absent (none of its files)" in mnist[1] and "absent (no such directory)" in mnist[2]
    fashion = lines[lines.index("fashion-mnist") + 1: lines.index("mnist")]
    assert fashion[-1].split() == [str(fashion_mnist.path), "complete", "<-", "loaded", "from", "here"]
    assert "generated in memory" in out and f"SPECTRAL_STUDY_DATA = {tmp_path / 'store'}" in out


# --- verify ----------------------------------------------------------------------------------


def test_verify_the_real_fashion_mnist(capsys, fashion_mnist):
    code, out, _ = run(capsys, "verify", "fashion-mnist")
    assert code == 0, out
    assert out.splitlines()[0] == f"fashion-mnist: {fashion_mnist.path}"
    assert out.count("  ok  ") == 4 and "as published" in out
    assert f"fingerprint {fashion_mnist.fingerprint}" in out and out.endswith("fashion-mnist: intact\n")


def test_verify_a_truncated_file_exits_1_and_names_it(fashion_copy, capsys):
    path = fashion_copy / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-100])
    code, out, _ = run(capsys, "verify", "fashion-mnist", "--path", str(fashion_copy))
    assert code == 1
    assert f"CORRUPT  {path}: cannot read it" in out and "truncated or corrupt file" in out
    assert out.count("  ok  ") == 3 and "fingerprint" not in out
    assert f"fashion-mnist: 1 of 4 files corrupt in {fashion_copy}" in out


def test_verify_a_well_formed_but_modified_file_exits_1_and_names_it(fashion_copy, capsys):
    # Un-gzipped, one label changed: still a valid IDX file, but not the published one.
    gz = fashion_copy / "train-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(gz.read_bytes()))
    raw[8] = (raw[8] + 1) % 10
    gz.unlink()
    (fashion_copy / "train-labels-idx1-ubyte").write_bytes(raw)
    code, out, _ = run(capsys, "verify", "fashion-mnist", "--path", str(fashion_copy))
    assert code == 1
    assert (f"CORRUPT  {fashion_copy / 'train-labels-idx1-ubyte'}: well-formed (60000), but its contents "
            f"have MD5 {hashlib.md5(raw).hexdigest()}, not the published 9018921c") in out


def test_verify_an_incomplete_path_exits_1_and_names_the_missing_file(fashion_copy, capsys):
    (fashion_copy / "train-images-idx3-ubyte.gz").unlink()
    code, _, err = run(capsys, "verify", "fashion-mnist", "--path", str(fashion_copy))
    assert code == 1
    assert f"{fashion_copy} is incomplete: missing train-images-idx3-ubyte[.gz]" in err


def test_verify_without_a_name_checks_what_is_installed(capsys):
    code, out, _ = run(capsys, "verify")
    assert code == 0
    assert "fashion-mnist: intact" in out and "mnist: not installed" in out and "cifar10: not installed" in out


def test_verify_a_named_set_that_is_not_installed_exits_1(capsys):
    code, _, err = run(capsys, "verify", "mnist")
    assert code == 1 and "mnist: data files not found. Searched, in order:" in err


# --- fetch -----------------------------------------------------------------------------------


def test_fetch_without_network_is_one_line_and_exit_1(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPECTRAL_STUDY_MIRROR", CLOSED_PORT)
    code, _, err = run(capsys, "fetch", "fashion-mnist", "--to", str(tmp_path / "dl"))
    assert code == 1
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"error: fashion-mnist: could not download {CLOSED_PORT}/fashion-mnist/")
    assert "spectral-study data verify fashion-mnist" in err
    assert not (tmp_path / "dl").exists()  # no partial file, no empty directory left


def test_fetch_from_a_mirror_checks_and_reports_the_fingerprint(tmp_path, monkeypatch, capsys, fashion_mnist):
    # A local mirror laid out <mirror>/<name>/<file>; the checksum table says what it serves.
    shutil.copytree(fashion_mnist.path, tmp_path / "mirror" / "fashion-mnist")
    files = {p.name: hashlib.md5(p.read_bytes()).hexdigest()
             for p in (tmp_path / "mirror" / "fashion-mnist").iterdir()}
    monkeypatch.setitem(_sources._MIRRORS, "fashion-mnist", ("http://unused/", files))
    monkeypatch.setenv("SPECTRAL_STUDY_MIRROR", (tmp_path / "mirror").as_uri())
    code, out, _ = run(capsys, "fetch", "fashion-mnist", "--to", str(tmp_path / "dl"))
    assert code == 0, out
    assert out.count("downloading") == 4
    assert {(p.stat().st_mode & 0o777) for p in (tmp_path / "dl").iterdir()} == {0o644}  # shareable
    assert out.splitlines()[-1] == (f"fashion-mnist: complete in {tmp_path / 'dl'}, "
                                    f"fingerprint {fashion_mnist.fingerprint}")
    code, out, _ = run(capsys, "fetch", "fashion-mnist", "--to", str(tmp_path / "dl"))
    assert code == 0 and "downloading" not in out  # already there, checksums match


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["list", "imagenet"], ["verify", "imagenet"], ["fetch", "imagenet"]])
def test_unknown_dataset_exits_2_listing_the_known_ones(capsys, argv):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err == f"error: unknown dataset 'imagenet'; available: {', '.join(data.DATASETS)}\n"


@pytest.mark.parametrize("argv", [["verify", "--path", "/tmp"], ["fetch", "synthetic"]])
def test_options_that_do_not_apply_exit_2(capsys, argv):
    code, _, err = run(capsys, *argv)
    assert code == 2 and err.startswith("error: ")
