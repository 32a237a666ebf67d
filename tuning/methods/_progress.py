"""What a person watching a search sees: a status line every half minute, Ray's chatter in a file.

The status line (one per ``PROGRESS_INTERVAL_S``) says how long the stage has run, how much of
its time budget is left, how many trials finished, run, were stopped early or failed, and the
best validation metric so far with its trial. Ray Tune's and Ray Train's own log lines (e.g.
"Experiment state snapshotting has been triggered multiple times ...") go to
``<experiment>/ray.log`` instead of the terminal; only their errors still reach it.
Tune's start-up box and the workers' line per checkpoint are not printed.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.stopper import TimeoutStopper

from tuning.store import EPOCH
from tuning.trial_config import trial_value

PROGRESS_ENV = "KLUE_TUNE_PROGRESS_S"
PROGRESS_INTERVAL_S = float(os.environ.get(PROGRESS_ENV, 30))
"""Seconds between two status lines (``$KLUE_TUNE_PROGRESS_S`` overrides; tests use 1)."""

RAY_LOGGERS = ("ray.tune", "ray.train")


def quiet_ray(log_file: Path) -> None:
    """Keep Ray's own lines off the terminal; call before ``ray.init``.

    Ray Tune's and Train's log lines go to ``log_file`` (their errors also to stderr); Tune's
    start-up box (which names a TensorBoard folder this project does not write) is not printed;
    trial workers started here log Ray's notices (a line per checkpoint) only from warnings up.
    """
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # at verbose=0 the older output is silent
    os.environ.setdefault("RAY_LOGGER_LEVEL", "warning")  # read by the worker processes Ray starts
    log_file.parent.mkdir(parents=True, exist_ok=True)
    to_file = QuietFileHandler(log_file, encoding="utf-8")
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    to_terminal = logging.StreamHandler(sys.stderr)
    to_terminal.setLevel(logging.ERROR)
    to_terminal.setFormatter(OneLine(f"%(levelname)s %(name)s: %(message)s (traceback: {log_file})"))
    for name in RAY_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [to_file, to_terminal]
        logger.setLevel(logging.INFO)
        logger.propagate = False  # Ray's own handler, on the "ray" logger, prints to the terminal


class QuietFileHandler(logging.FileHandler):
    """A log file that stays quiet when it cannot be written (a full disk): Python's default
    prints a "--- Logging error ---" block with two tracebacks to stderr for every record."""

    def handleError(self, record: logging.LogRecord) -> None:
        self.failed = getattr(self, "failed", 0) + 1


class OneLine(logging.Formatter):
    """A record and its exception's last line, without the traceback (it goes to the log file):
    one line on the terminal per failed trial, not a screen of Ray's internals."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().formatMessage(_with_message(record))
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            last = (str(error).strip().splitlines() or [""])[-1]
            message = message.replace(" (traceback:", f": {type(error).__name__}: {last} (traceback:", 1)
        return message


def _with_message(record: logging.LogRecord) -> logging.LogRecord:
    record.message = record.getMessage()
    return record


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


class Progress(Callback):
    """Prints ``[<stage>] progress ...`` every ``interval`` seconds while the stage runs.

    Args:
        stage: the stage's name, the line's prefix.
        metric, mode: the search metric and whether higher (``max``) or lower is better.
        num_epochs: epochs a trial trains unless its config says otherwise; a trial that ended
            before its own ``num_epochs`` was stopped early (by the scheduler or the budget).
        time_budget_s: the stage's time budget in seconds, or ``None``.
        interval: seconds between two lines.
    """

    def __init__(
        self,
        stage: str,
        metric: str,
        mode: str,
        num_epochs: int,
        time_budget_s: float | None = None,
        interval: float = PROGRESS_INTERVAL_S,
    ) -> None:
        self.stage, self.metric, self.mode, self.num_epochs = stage, metric, mode, num_epochs
        self.time_budget_s, self.interval = time_budget_s, interval
        self.started: float | None = None

    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        # Called at every (re)start, also after Tuner.restore unpickled this callback: the clock
        # starts here, and a resumed stage's budget is what Tune's time budget has left.
        self.started = self.last = time.monotonic()
        if isinstance(stop, TimeoutStopper) and self.time_budget_s is not None:
            self.time_budget_s = getattr(stop, "_budget", self.time_budget_s)

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        if self.started is None:
            self.setup()
        elif now - self.last >= self.interval:
            self.last = now
            print(f"[{self.stage}] progress {self.status(trials, now - self.started)}", flush=True)

    def status(self, trials: list, elapsed: float) -> str:
        """One line: time, trial counts by state, the best metric so far."""
        counts = dict.fromkeys(("finished", "stopped early", "failed", "running", "waiting"), 0)
        best: tuple[float, str] | None = None
        for trial in trials:
            counts[self._state(trial)] += 1
            value = (trial.metric_analysis.get(self.metric) or {}).get(self.mode)
            if value is not None and (
                best is None or (value > best[0] if self.mode == "max" else value < best[0])
            ):
                best = (value, trial.trial_id)
        clock = f"{_duration(elapsed)} elapsed"
        if self.time_budget_s is not None:
            clock += f", {_duration(self.time_budget_s - elapsed)} of the time budget left"
        shown = ", ".join(f"{n} {state}" for state, n in counts.items() if n or state != "waiting")
        top = f"best {self.metric} {best[0]:.4f} ({best[1]})" if best else f"no {self.metric} yet"
        return f"{clock}; trials: {shown}; {top}"

    def _state(self, trial: Any) -> str:
        if trial.status == "TERMINATED":
            epochs = (trial.last_result or {}).get(EPOCH, 0)
            return (
                "finished"
                if epochs >= trial_value(trial.config, "num_epochs", self.num_epochs)
                else "stopped early"
            )
        return {"RUNNING": "running", "ERROR": "failed"}.get(trial.status, "waiting")
