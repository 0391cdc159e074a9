"""Live progress of a running study: one line that updates in place on a terminal, plain lines in
a log file, and ``<results>/_progress.json`` for `spectral-study status`.

    progress = Progress(study="quickstart", total=15, epochs=3, metric="test_accuracy",
                        direction="max", root="results/quickstart")
    progress.observe([TrialView("a1", "dense_w32_relu_both_s0", "running", epoch=2)])
    progress.score("a1", "dense_w32_relu_both_s0", 0.81)   # a reported epoch: best so far
    progress.print("[1/15] a1 dense_w32_relu_both_s0: completed ...")  # above the live line
    progress.tick()      # redraw; off a terminal a line every `heartbeat` s; the file every few s
    progress.close()

On a terminal (tqdm) the line reads (on one line)

    quickstart: trials 5 done, 2 running, 0 failed of 15 | epochs 21/45 | 0:35 elapsed, ETA 0:40 |
    best test_accuracy 0.8412 (dense_w512_relu_both_s0)

and off one (a log file, `ray job logs`) the same text is printed as ``progress: …`` when the
study starts and at least every `HEARTBEAT_SECONDS`. The ETA is the epochs still to run over the
rate of epochs this driver has seen finish since its first trial started. Ray-free: the Tune
callback (`spectral_study.callback`) feeds it plain values.
"""
from __future__ import annotations

import json
import math
import os
import socket
import sys
import time
import uuid
from dataclasses import dataclass

PROGRESS_FILE = "_progress.json"
HEARTBEAT_SECONDS = 60.0  # off a terminal, a plain line at least this often
HEARTBEAT_ENV = "SPECTRAL_STUDY_HEARTBEAT_SECONDS"  # overrides it (tests, chatty logs)
FILE_SECONDS = 5.0      # how often the progress file is rewritten
FILE_ENV = "SPECTRAL_STUDY_PROGRESS_FILE_SECONDS"  # more often, never less (STALE_SECONDS assumes it)
REDRAW_SECONDS = 0.5    # how often the terminal line is redrawn
# A running driver rewrites the file every FILE_SECONDS; one this much older has stopped (or lost
# its storage). Generous: a driver busy with a slow callback still counts as alive.
STALE_SECONDS = 60.0
STATES = ("pending", "running", "done", "failed")


@dataclass
class TrialView:
    """One trial as the display sees it: ``state`` one of `STATES` (done: completed, stopped or
    diverged; failed: out of retries), ``epoch`` the last epoch it reported."""

    trial_id: str
    label: str
    state: str = "pending"
    epoch: int = 0


class Progress:
    def __init__(self, *, study: str, total: int, epochs: int, metric: str, direction: str = "max",
                 root: str | None = None, stream=None, interactive: bool | None = None,
                 heartbeat: float | None = None, clock=time.time) -> None:
        self.study, self.total, self.epochs, self.metric, self.direction = study, total, epochs, metric, direction
        self.root, self.clock = root, clock
        self.stream = stream if stream is not None else sys.stdout
        if interactive is None:
            interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interactive = interactive
        if heartbeat is None:
            heartbeat = float(os.environ.get(HEARTBEAT_ENV, HEARTBEAT_SECONDS))
        self.heartbeat = heartbeat
        self.file_seconds = min(FILE_SECONDS, float(os.environ.get(FILE_ENV, FILE_SECONDS)))
        self.trials: dict[str, TrialView] = {}
        self._final: set[str] = set()           # trials whose end this driver saw (their state is final)
        self._epochs_seen: dict[str, int] = {}  # the epoch each trial was at when this driver first saw it
        self.best: tuple[float, str, str] | None = None   # (value, trial_id, label)
        self.started = clock()
        self._training_since: float | None = None  # when a trial first ran: the ETA's clock (not Ray's start-up)
        self._last_heartbeat = self._last_file = self._last_redraw = -math.inf
        self._bar = None
        self._file_failed = False
        self.closed = False

    # ------------------------------------------------------------------ what happened

    def observe(self, views) -> None:
        """The trials as Tune holds them now (restored ones included); a trial whose end this
        driver reported keeps that state."""
        for view in views:
            known = self.trials.get(view.trial_id)
            self._epochs_seen.setdefault(view.trial_id, view.epoch)
            if known is not None and view.trial_id in self._final:
                known.epoch = max(known.epoch, view.epoch)
                continue
            self.trials[view.trial_id] = TrialView(view.trial_id, view.label, view.state,
                                                   max(view.epoch, known.epoch if known else 0))
            if view.state == "running" and self._training_since is None:
                self._training_since = self.clock()

    def epoch(self, trial_id: str, label: str, epoch: int) -> None:
        view = self.trials.setdefault(trial_id, TrialView(trial_id, label, "running"))
        self._epochs_seen.setdefault(trial_id, 0)
        if self._training_since is None:
            self._training_since = self.clock()
        view.epoch = max(view.epoch, epoch)
        if trial_id not in self._final:
            view.state = "running"

    def score(self, trial_id: str, label: str, value) -> None:
        """A reported value of the study's metric: kept if it is the best so far."""
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return
        better = self.best is None or (value > self.best[0] if self.direction == "max" else value < self.best[0])
        if better:
            self.best = (float(value), trial_id, label)

    def end(self, trial_id: str, label: str, state: str) -> None:
        """A trial ended (``done`` or ``failed``)."""
        view = self.trials.setdefault(trial_id, TrialView(trial_id, label))
        view.state = state
        self._epochs_seen.setdefault(trial_id, 0)
        self._final.add(trial_id)

    @property
    def finished(self) -> int:
        return sum(v.state in ("done", "failed") for v in self.trials.values())

    # ------------------------------------------------------------------ what it shows

    def snapshot(self) -> dict:
        now = self.clock()
        counts = {state: 0 for state in STATES}
        for view in self.trials.values():
            counts[view.state] = counts.get(view.state, 0) + 1
        unseen = max(0, self.total - len(self.trials))
        counts["pending"] += unseen
        epochs_done = sum(v.epoch for v in self.trials.values())
        # A trial that ended ran all the epochs it will; any other has all of them ahead.
        epochs_total = unseen * self.epochs + sum(
            v.epoch if v.state in ("done", "failed") else max(self.epochs, v.epoch) for v in self.trials.values())
        seen_here = sum(v.epoch - self._epochs_seen.get(v.trial_id, 0) for v in self.trials.values())
        elapsed = now - self.started
        training = now - self._training_since if self._training_since is not None else 0.0
        remaining = max(0, epochs_total - epochs_done)
        if remaining == 0 and counts["pending"] == counts["running"] == 0:
            eta = 0.0
        elif seen_here > 0 and training > 0:
            eta = remaining * training / seen_here
        else:
            eta = None
        running = [{"trial_id": v.trial_id, "label": v.label, "epoch": v.epoch, "epochs": self.epochs}
                   for v in self.trials.values() if v.state == "running"]
        best = None
        if self.best is not None:
            best = {"value": self.best[0], "trial_id": self.best[1], "label": self.best[2]}
        return {"study": self.study, "state": "finished" if self.closed else "running",
                "host": socket.gethostname(), "pid": os.getpid(), "started_at": self.started, "updated_at": now,
                "trials": {"total": self.total, **counts}, "epochs": {"done": epochs_done, "total": epochs_total},
                "elapsed_seconds": elapsed, "eta_seconds": eta, "metric": self.metric,
                "direction": self.direction, "best": best, "running": running}

    def print(self, text: str) -> None:
        """A line of its own (a finished trial, a retry), above the live line on a terminal."""
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def tick(self, *, force: bool = False, file: bool = False) -> None:
        """Redraw the terminal line, print a plain line when one is due, rewrite the file when due
        (``force``: all of them now; ``file``: the file now)."""
        now = self.clock()
        if self.interactive:
            if force or file or now - self._last_redraw >= REDRAW_SECONDS:
                self._last_redraw = now
                self._draw(format_line(self.snapshot(), width=self._columns()))
        elif force or now - self._last_heartbeat >= self.heartbeat:
            self._last_heartbeat = now
            print(f"progress: {format_line(self.snapshot())}", file=self.stream, flush=True)
        if self.root is not None and (force or file or now - self._last_file >= self.file_seconds):
            self._last_file = now
            self.write_file()

    def close(self) -> None:
        """The last state: the line printed once more as plain text, the file marked finished."""
        if self.closed:
            return
        self.closed = True
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        print(f"progress: {format_line(self.snapshot())}", file=self.stream, flush=True)
        if self.root is not None:
            self.write_file()

    def write_file(self) -> None:
        try:
            write_progress(self.root, self.snapshot())
        except OSError as error:  # the display must never stop the study
            if not self._file_failed:
                self._file_failed = True
                self.print(f"warning: cannot write {PROGRESS_FILE} in {self.root}: {error}")

    def _columns(self) -> int | None:
        try:
            return os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            return None

    def _draw(self, line: str) -> None:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=None, bar_format="{desc}", file=self.stream, dynamic_ncols=True, leave=False)
        self._bar.set_description_str(line, refresh=True)


def format_line(snapshot: dict, *, width: int | None = None) -> str:
    """The one-line summary of a snapshot (see the module docstring); narrower than ``width``
    columns where it can be (a short form on a narrow terminal)."""
    trials, epochs = snapshot["trials"], snapshot["epochs"]
    eta = snapshot["eta_seconds"]
    eta = "?" if eta is None else format_seconds(eta)
    elapsed = format_seconds(snapshot["elapsed_seconds"])
    best = snapshot.get("best")
    parts = [f"{snapshot['study']}: trials {trials['done']} done, {trials['running']} running, "
             f"{trials['failed']} failed of {trials['total']}",
             f"epochs {epochs['done']}/{epochs['total']}", f"{elapsed} elapsed, ETA {eta}"]
    if best is not None:
        parts.append(f"best {snapshot['metric']} {best['value']:.4f} ({best['label']})")
    line = " | ".join(parts)
    if width is None or len(line) < width:
        return line
    short = (f"{snapshot['study']}: {trials['done']}/{trials['total']} done, {trials['running']} run, "
             f"{trials['failed']} failed | ep {epochs['done']}/{epochs['total']} | {elapsed} ETA {eta}")
    return short + (f" | best {best['value']:.4f}" if best is not None else "")


def format_seconds(seconds: float) -> str:
    """``75`` -> ``1:15``; ``3725`` -> ``1:02:05``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


# ---------------------------------------------------------------------------- the progress file

def write_progress(root: str, snapshot: dict) -> None:
    """``<root>/_progress.json``, whole or absent: a local file is written under a temporary
    name and renamed; an object store's PUT is whole by itself."""
    text = json.dumps(snapshot, indent=1)
    if "://" not in root:
        os.makedirs(root, exist_ok=True)
        temporary = os.path.join(root, f".{PROGRESS_FILE}.tmp-{uuid.uuid4().hex}")
        try:
            with open(temporary, "w") as handle:
                handle.write(text)
            os.replace(temporary, os.path.join(root, PROGRESS_FILE))
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
        return
    from spectral_study.results import ResultsError, write_text

    try:
        write_text(root, PROGRESS_FILE, text)
    except ResultsError as error:
        raise OSError(str(error)) from None


def read_progress(root: str) -> dict | None:
    """The progress file a driver wrote in ``root`` (None when there is none, or it is unreadable)."""
    from spectral_study.results import read_text

    try:
        return json.loads(read_text(root, PROGRESS_FILE))
    except (FileNotFoundError, ValueError):
        return None


def driver_alive(progress: dict | None, *, now: float | None = None) -> bool:
    """Whether the driver that wrote ``progress`` still runs: it said "running", wrote within
    `STALE_SECONDS`, and, on this host, its process exists."""
    if not progress or progress.get("state") != "running":
        return False
    now = time.time() if now is None else now
    if now - float(progress.get("updated_at", 0)) > STALE_SECONDS:
        return False
    if progress.get("host") == socket.gethostname():
        try:
            os.kill(int(progress["pid"]), 0)
        except (ProcessLookupError, ValueError, KeyError, TypeError):
            return False
        except PermissionError:
            return True  # it exists, owned by someone else
    return True
