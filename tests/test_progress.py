"""Live progress (spectral_study.progress): counts, epochs, ETA, the plain lines of a log, the
in-place line of a terminal, the progress file; and one real study run in a pseudo-terminal whose
`status` lists the running trials while it runs."""
import fcntl
import io
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest

from spectral_study.progress import (
    FILE_ENV,
    PROGRESS_FILE,
    STALE_SECONDS,
    Progress,
    TrialView,
    driver_alive,
    format_line,
    format_seconds,
    read_progress,
    write_progress,
)
from spectral_study.testing import write_study


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(clock, **options) -> Progress:
    options = {"stream": io.StringIO(), "interactive": False, "heartbeat": 60, **options}
    return Progress(study="s", total=4, epochs=3, metric="test_accuracy", clock=clock, **options)


def test_counts_epochs_eta_and_best_follow_each_reported_epoch():
    clock = Clock()
    progress = make(clock)
    clock.now += 30  # Ray starting: not part of the ETA's rate
    progress.observe([TrialView("a", "cell-a", "running"), TrialView("b", "cell-b", "running")])
    clock.now += 10
    progress.epoch("a", "cell-a", 1)
    progress.score("a", "cell-a", 0.5)
    progress.epoch("b", "cell-b", 1)
    progress.score("b", "cell-b", 0.7)
    snap = progress.snapshot()
    assert snap["trials"] == {"total": 4, "pending": 2, "running": 2, "done": 0, "failed": 0}
    assert snap["epochs"] == {"done": 2, "total": 12}
    assert snap["eta_seconds"] == pytest.approx(10 * 10 / 2)  # 10 epochs left at 2 per 10 s
    assert snap["best"] == {"value": 0.7, "trial_id": "b", "label": "cell-b"}
    assert snap["elapsed_seconds"] == 40
    assert [r["trial_id"] for r in snap["running"]] == ["a", "b"] and snap["running"][0]["epoch"] == 1

    progress.end("a", "cell-a", "failed")      # a trial that failed at epoch 1 runs no more epochs
    progress.observe([TrialView("a", "cell-a", "running", 1)])   # Tune lagging behind: the end holds
    snap = progress.snapshot()
    assert snap["trials"]["failed"] == 1 and snap["trials"]["running"] == 1
    assert snap["epochs"] == {"done": 2, "total": 1 + 3 + 2 * 3}
    assert progress.finished == 1


def test_min_direction_and_non_finite_scores():
    progress = make(Clock(), direction="min")
    progress.score("a", "a", 0.5)
    progress.score("b", "b", float("nan"))
    progress.score("c", "c", 0.2)
    progress.score("d", "d", None)
    assert progress.best == (0.2, "c", "c")


def test_a_restored_trial_s_earlier_epochs_do_not_speed_up_the_eta():
    clock = Clock()
    progress = make(clock)
    progress.observe([TrialView("a", "a", "done", 3), TrialView("b", "b", "running", 2)])  # a resume
    clock.now += 10
    progress.epoch("b", "b", 3)
    snap = progress.snapshot()
    assert snap["epochs"] == {"done": 6, "total": 12}
    assert snap["eta_seconds"] == pytest.approx(6 * 10 / 1)  # one epoch seen by this driver


def test_off_a_terminal_a_plain_line_at_start_and_every_heartbeat():
    clock, stream = Clock(), io.StringIO()
    progress = make(clock, stream=stream, heartbeat=60)
    progress.tick()
    clock.now += 30
    progress.tick()
    progress.print("[1/4] a cell-a: completed")
    clock.now += 31
    progress.tick()
    progress.close()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("progress: s: trials 0 done, 0 running, 0 failed of 4 | epochs 0/12 | 0:00 elapsed")
    assert lines[1] == "[1/4] a cell-a: completed"
    assert lines[2].startswith("progress: ") and "1:01 elapsed" in lines[2]
    assert lines[3].startswith("progress: ") and len(lines) == 4  # close: the last state, once
    assert "\r" not in stream.getvalue()


def test_on_a_terminal_one_line_redrawn_in_place_with_finished_lines_above():
    clock, stream = Clock(), io.StringIO()
    progress = make(clock, stream=stream, interactive=True)
    progress.tick()
    progress.epoch("a", "cell-a", 1)
    clock.now += 1
    progress.tick()
    progress.print("[1/4] a cell-a: completed")
    progress.close()
    out = stream.getvalue()
    assert out.count("\r") >= 2  # redrawn, not appended
    assert "s: trials 0 done, 1 running, 0 failed of 4 | epochs 1/12" in out
    assert "[1/4] a cell-a: completed\n" in out
    assert out.rstrip().splitlines()[-1].startswith("progress: ")


def test_format_line_and_its_short_form():
    snapshot = {"study": "quickstart", "trials": {"total": 15, "done": 5, "running": 2, "failed": 0},
                "epochs": {"done": 21, "total": 45}, "elapsed_seconds": 35, "eta_seconds": 40,
                "metric": "test_accuracy", "best": {"value": 0.84123, "trial_id": "x", "label": "dense_w512"}}
    assert format_line(snapshot) == ("quickstart: trials 5 done, 2 running, 0 failed of 15 | epochs 21/45 | "
                                     "0:35 elapsed, ETA 0:40 | best test_accuracy 0.8412 (dense_w512)")
    short = format_line(snapshot, width=80)
    assert len(short) < 80 and "21/45" in short and "ETA 0:40" in short
    assert format_line({**snapshot, "eta_seconds": None, "best": None}).endswith("ETA ?")
    assert [format_seconds(s) for s in (0, 59.6, 75, 3725)] == ["0:00", "1:00", "1:15", "1:02:05"]


def test_the_progress_file_is_whole_and_says_whether_its_driver_lives(tmp_path):
    clock = Clock()
    clock.now = time.time()
    progress = make(clock, root=str(tmp_path))
    progress.observe([TrialView("a", "cell-a", "running", 2)])
    progress.tick()
    saved = read_progress(str(tmp_path))
    assert saved["state"] == "running" and saved["running"][0]["epoch"] == 2 and saved["pid"] == os.getpid()
    assert [p.name for p in tmp_path.iterdir()] == [PROGRESS_FILE]  # no temporary left
    assert driver_alive(saved)
    assert not driver_alive(saved, now=saved["updated_at"] + STALE_SECONDS + 1)
    assert not driver_alive({**saved, "pid": _dead_pid()})
    progress.close()
    assert read_progress(str(tmp_path))["state"] == "finished" and not driver_alive(read_progress(str(tmp_path)))
    assert read_progress(str(tmp_path / "nothing")) is None
    write_progress(str(tmp_path), {"state": "running"})
    assert json.loads((tmp_path / PROGRESS_FILE).read_text()) == {"state": "running"}


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# ------------------------------------------------------------------------------ a real study

def test_a_study_on_a_terminal_shows_a_live_line_and_status_its_running_trials(tmp_path):
    """The CLI in a pseudo-terminal: one line redrawn with every epoch, finished trials above
    it; meanwhile `status` reads the progress file and lists the running trials' epochs."""
    from spectral_study.status import study_status

    study = write_study(tmp_path, "live", model={"modes": ["spectral-eigvals", "dense"], "widths": [128]},
                        training={"epochs": 6})
    root = tmp_path / "results" / "live"
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 250, 0, 0))  # 250 columns
    # The file every 0.5 s instead of 5: the study lasts ~10 s, and at 5 s `status` sometimes saw
    # its trials only at epoch 0 or already gone (1 failure in 3 runs).
    driver = subprocess.Popen([sys.executable, "-m", "spectral_study.cli", "run", str(study)],
                              stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                              env={**os.environ, FILE_ENV: "0.5"})
    os.close(slave)
    output, statuses = b"", []
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the terminal closed: the driver ended
                    break
                if not chunk:
                    break
                output += chunk
            progress = read_progress(str(root)) if root.exists() else None
            if progress and progress["state"] == "running" and progress["running"]:
                statuses.append(study_status(root))
        code = driver.wait(timeout=60)
    finally:
        os.close(master)
        try:
            os.killpg(driver.pid, signal.SIGKILL)  # whatever Ray left behind in the session
        except ProcessLookupError:
            pass
    text = output.decode(errors="replace")
    assert code == 0, text
    line = re.compile(r"live: trials (\d) done, (\d) running, (\d) failed of 2 \| epochs (\d+)/12 \| "
                      r"\d+:\d\d elapsed, ETA (\d+:\d\d|\?)")
    redraws = [m for m in line.finditer(text)]
    assert len(redraws) >= 5 and "\r" in text, text
    # Moved by epochs, not only by trial ends: a line counts more epochs than its finished trials ran.
    assert any(int(m.group(4)) > 6 * int(m.group(1)) for m in redraws), text
    assert "best test_accuracy" in text and "ETA ?" not in redraws[-1].group(0)
    assert len(re.findall(r"\[\d/2\] \S+ \S+: completed", text)) == 2
    assert statuses, "status never saw the study running"
    epochs_seen = [int(e) for s in statuses for e in re.findall(r": epoch (\d+)/6", s)]
    assert epochs_seen and max(epochs_seen) >= 1, statuses[-1]
    assert all(s.splitlines()[0].endswith("of 2 trials finished") for s in statuses)
    assert any("running (progress" in s for s in statuses)
    assert read_progress(str(root))["state"] == "finished"


def test_the_progress_file_can_be_rewritten_more_often_never_less(monkeypatch, tmp_path):
    """`status` calls a file older than STALE_SECONDS stale, which assumes the 5 s rewrite: the
    variable may shorten the interval (tests, impatient users), not lengthen it."""
    from spectral_study.progress import FILE_SECONDS

    for value, expected in (("0.5", 0.5), ("600", FILE_SECONDS)):
        monkeypatch.setenv(FILE_ENV, value)
        now = [0.0]
        progress = Progress(study="s", total=1, epochs=1, metric="m", root=str(tmp_path),
                            clock=lambda now=now: now[0], interactive=False, heartbeat=1e9)
        assert progress.file_seconds == expected
        progress.tick()  # t = 0: the first rewrite
        (tmp_path / PROGRESS_FILE).unlink()
        now[0] = 0.6
        progress.tick()  # rewritten again only when the interval is 0.5 s
        assert (tmp_path / PROGRESS_FILE).exists() == (expected == 0.5)
