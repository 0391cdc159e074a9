"""Results, the resolved study, Ray Tune's state and every checkpoint on S3, end to end: a real
S3-compatible server (moto, `s3_server`) on 127.0.0.1, real Ray, and both ways users point at such
a store: AWS_ENDPOINT_URL, or the endpoint in the URI (``?endpoint_override=…&scheme=http``)."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spectral_study.cli import main
from spectral_study.results import load_results
from spectral_study.testing import write_study

ROOT = Path(__file__).resolve().parents[1]
# Two trials of two epochs; the dense one fails once after its first epoch and is retried from
# its checkpoint (the test-only `testing:` section, as in tests/test_faults.py).
FLAKY = {"model": {"modes": ["dense", "spectral-eigvals"], "widths": [16]}, "training": {"epochs": 2},
         "testing": {"inject_failure": "first_attempt", "failing_modes": ["dense"]}}


def test_a_location_that_cannot_be_opened_is_one_line_and_exit_2(s3_server, tmp_path, capsys, monkeypatch):
    """A missing bucket (found before Ray starts) and a URI pyarrow refuses (found when the study
    is read): one line on stderr, exit 2, nothing written, no Ray started."""
    import ray

    monkeypatch.chdir(tmp_path)
    study = write_study(tmp_path, "nowhere", **FLAKY)
    missing_bucket = s3_server.uri("r", query=True, bucket="no-such-bucket")
    bad_scheme = s3_server.uri("r", query=True).replace("scheme=http", "scheme=ftp")
    for storage, says in [(missing_bucket, "no-such-bucket"), (bad_scheme, "ftp")]:
        capsys.readouterr()
        assert main(["run", str(study), "--storage", storage]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and says in err, err
    assert s3_server.keys() == [] and not ray.is_initialized()  # nothing written, nothing ran
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nowhere.yaml"]


def _end_session(session_id: int) -> None:
    """SIGKILL what is left of the process group we started (Ray's agents outlive a killed driver)."""
    try:
        os.killpg(session_id, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def s3_ray(s3_server, local_ray):
    """The local Ray, started after the S3 server's variables are in the environment, so that
    its workers (the trials) inherit them."""
    return local_ray


def test_study_on_s3_through_aws_endpoint_url(s3_ray, s3_server, tmp_path, capsys, monkeypatch):
    import ray

    # The trials' workers see the endpoint and credentials (Tune's checkpoint uploads run there).
    seen = ray.get(ray.remote(lambda: os.environ.get("AWS_ENDPOINT_URL")).remote())
    assert seen == s3_server.endpoint
    monkeypatch.chdir(tmp_path)
    uri = s3_server.uri("env")
    spec_path = write_study(tmp_path, "flaky", **FLAKY)
    capsys.readouterr()
    assert main(["run", str(spec_path), "--storage", uri]) == 0

    root = f"{uri}/flaky"
    keys = s3_server.keys("env/")
    print("\n".join(keys))
    trials = load_results(root)["trials"]
    ids = sorted(trials["trial_id"])
    files = [k for k in keys if not k.endswith("/")]
    for tid in ids:
        assert any(re.fullmatch(rf"env/flaky/_tune/{tid}/checkpoint_\d+/state\.pt", k) for k in files)
    # Every trial finished, so the run compacted the fragments into one file per table, on S3 too.
    assert [k for k in files if k.endswith(".parquet")] == [
        f"env/flaky/{table}/compacted.parquet" for table in ("epochs", "spectra", "trials")]
    spectral = trials.loc[trials["mode"] == "spectral-eigvals", "trial_id"].item()
    assert set(load_results(root, tables=["spectra"])["spectra"]["trial_id"]) == {spectral}
    assert "env/flaky/study.yaml" in files and "env/flaky/_tune/tuner.pkl" in files
    assert any(re.fullmatch(r"env/flaky/_tune/experiment_state-.*\.json", k) for k in files)
    assert not [k for k in files if ".tmp-" in k]
    # Nothing landed in a local folder named after the URI (nor anywhere else here).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flaky.yaml"]

    # The retried trial continued from its checkpoint, which only S3 holds.
    assert len(trials) == 2 and set(trials["status"]) == {"completed"}
    dense = trials[trials["mode"] == "dense"]
    assert dense["attempt"].tolist() == [2] and dense["restored_from_epoch"].tolist() == [1]

    capsys.readouterr()
    assert main(["status", root]) == 0
    assert "2 of 2 trials finished" in capsys.readouterr().out

    if str(ROOT) not in sys.path:  # `analysis` is a folder at the repository's root
        sys.path.insert(0, str(ROOT))
    from analysis.stats import load

    tables = load([root])
    assert len(tables["trials"]) == 2 and set(tables["trials"]["results_dir"]) == {root}
    assert len(tables["epochs"]) == 4


def test_killed_driver_resumes_from_a_uri_with_the_endpoint_in_it(s3_ray, s3_server, tmp_path, capsys,
                                                                   monkeypatch):
    """The endpoint in the URI only: the driver runs without AWS_ENDPOINT_URL (its own Ray and
    trials too), is SIGKILLed mid-study, and `resume URI` (this process, without the variable)
    finishes the study with every trial once."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    storage = s3_server.uri("query", query=True)
    study = write_study(tmp_path, "killed", model={"modes": ["dense", "spectral-eigvals"], "widths": [16, 32]},
                        training={"epochs": 3})
    root = storage.replace("/query?", "/query/killed?")
    driver = subprocess.Popen([sys.executable, "-m", "spectral_study.cli", "run", str(study), "--storage", storage],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 300  # generous: a busy 2-core machine starts Ray slowly
        while time.monotonic() < deadline and driver.poll() is None:
            if len(s3_server.keys("query/killed/trials/")) >= 2:
                break
            time.sleep(0.2)
        assert driver.poll() is None, "the study ended before it could be killed:\n" + driver.stdout.read()
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        _end_session(driver.pid)
    finished_before = len(s3_server.keys("query/killed/trials/"))
    assert 2 <= finished_before < 4, driver.stdout.read()

    capsys.readouterr()
    code = main(["resume", root])
    output = capsys.readouterr().out
    print(output)  # shown with `pytest -s`
    assert code == 0, output
    assert f"resuming killed from {root.replace('?', '/_tune?')}" in output
    tables = load_results(root)
    trials, epochs = tables["trials"], tables["epochs"]
    assert len(trials) == 4 and trials["trial_id"].is_unique and set(trials["status"]) == {"completed"}
    assert len(epochs) == 4 * 3 and not epochs.duplicated(["trial_id", "epoch"]).any()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["killed.yaml"]


def test_a_checkpoint_folder_without_its_state_file_is_not_whole(s3_server):
    """What a driver killed while Tune deleted a replaced checkpoint leaves on S3: the folder's
    marker without ``state.pt``. The folder "exists", the checkpoint is not whole, so the trial
    starts over instead of failing every retry on the missing file (seen once in this suite)."""
    import pyarrow.fs as pafs

    from spectral_study.checkpoint import CHECKPOINT_FILE, is_whole
    from spectral_study.results import filesystem

    s3, root = filesystem(s3_server.uri("ckpt", query=True))
    folder = f"{root}/checkpoint_000001"
    s3.create_dir(folder)
    assert s3.get_file_info(folder).type == pafs.FileType.Directory  # what the old check looked at
    assert not is_whole(s3, folder) and not is_whole(s3, f"{root}/checkpoint_000002")
    with s3.open_output_stream(f"{folder}/{CHECKPOINT_FILE}") as out:
        out.write(b"state")
    assert is_whole(s3, folder) and is_whole(s3, folder + "/")
