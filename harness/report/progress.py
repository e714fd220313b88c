"""Progress of a run: one line per finished step, and on a terminal a live status line.

On a terminal the last line is rewritten in place (``\\r``): steps done of total, the step
running now and how long it has been running, so a long step on real hardware (a module's
attach, a slow card) shows that the run is alive. Elsewhere (CI logs, pipes) only the plain
step lines are printed, one per step, flushed as they come.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from typing import Protocol, Sequence, TextIO

VERDICT_WORDS = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}
_COLOURS = {"passed": "\x1b[32m", "failed": "\x1b[31;1m", "skipped": "\x1b[33m"}   # ECMA-48 SGR
_RESET = "\x1b[0m"
_CLEAR_LINE = "\r\x1b[K"          # back to column 1, erase to the end of the line
_SPINNER = "|/-\\"


class PlannedStep(Protocol):
    """What the display needs of a seed step (mcim_hil.procedures.base.SeedStep)."""

    number: int | str
    title: str
    entities: tuple[str, ...]


class FinishedStep(Protocol):
    """What the display needs of a finished step (mcim_hil.procedures.base.StepRow)."""

    number: int | str
    entities: tuple[str, ...]
    title: str
    detail: str
    duration_s: float
    verdict: str


def step_line(row: FinishedStep, *, colour: bool = False) -> str:
    """The plain line of a finished step (the CLI's table row)."""
    number = row.number if isinstance(row.number, int) else str(row.number)
    entities = ", ".join(row.entities)
    word = f"{VERDICT_WORDS.get(row.verdict, row.verdict.upper()):<7}"
    if colour and row.verdict in _COLOURS:
        word = f"{_COLOURS[row.verdict]}{word}{_RESET}"
    return f"{number:>5}  {entities:<24.24} {row.duration_s * 1000:7.1f} ms  {word} {row.detail}"


def header_lines(title: str) -> str:
    return f"{title}\n{'step':>5}  {'entities':<24} {'duration':>9}  {'verdict':<7} what happened"


class StepProgress:
    """Pass as ``on_row`` to ``run_procedure``; use as a context manager (stops the ticker).

    ``live`` defaults to whether ``out`` is a terminal.
    """

    def __init__(self, steps: Sequence[PlannedStep], out: TextIO | None = None, *, live: bool | None = None,
                 tick_s: float = 0.25) -> None:
        self.out = out if out is not None else sys.stdout
        self.steps = list(steps)
        self.live = _is_terminal(self.out) if live is None else live
        self.colour = self.live and not os.environ.get("NO_COLOR")
        self.done = 0
        self._status: str | None = None
        self._since = time.monotonic()
        self._tick = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if self.live:
            self._ticker = threading.Thread(target=self._run_ticker, args=(tick_s,), name="mcim-hil progress",
                                            daemon=True)
            self._ticker.start()

    # -- what the run reports --------------------------------------------------------------------
    def status(self, text: str) -> None:
        """Show what is going on now (a live status only; nothing in plain output)."""
        with self._lock:
            self._status, self._since = text, time.monotonic()
            self._draw()

    def header(self, title: str) -> None:
        """The run's title and the table head; then the first step is the one running."""
        with self._lock:
            self._clear()
            self.out.write(header_lines(title) + "\n")
            self._status, self._since = self._running(), time.monotonic()
            self._draw()
            self.out.flush()

    def __call__(self, row: FinishedStep) -> None:
        with self._lock:
            self._clear()
            self.out.write(step_line(row, colour=self.colour) + "\n")
            self.done += 1
            self._status, self._since = self._running(), time.monotonic()
            self._draw()
            self.out.flush()

    def close(self) -> None:
        """Stop the ticker and take the status line away."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        with self._lock:
            self._status = None
            self._clear()
            self.out.flush()

    def __enter__(self) -> StepProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the status line ---------------------------------------------------------------------------
    def _running(self) -> str | None:
        if self.done >= len(self.steps):
            return None
        step = self.steps[self.done]
        return f"step {step.number} ({', '.join(step.entities)}): {step.title}"

    def status_line(self) -> str:
        """The live line as it reads now (without the carriage return)."""
        total = len(self.steps)
        bar_width = 20
        filled = bar_width * self.done // total if total else 0
        bar = "#" * filled + "." * (bar_width - filled)
        text = f"[{bar}] {self.done}/{total} steps done"
        if self._status:
            elapsed = time.monotonic() - self._since
            text += f" {_SPINNER[self._tick % len(_SPINNER)]} {self._status}  {elapsed:.1f} s"
        width = shutil.get_terminal_size((100, 24)).columns - 1
        return text if len(text) <= width else text[:max(width - 3, 0)] + "..."

    def _draw(self) -> None:
        if not self.live or self._stop.is_set():
            return
        self.out.write(_CLEAR_LINE + self.status_line())
        self.out.flush()

    def _clear(self) -> None:
        if self.live:
            self.out.write(_CLEAR_LINE)

    def _run_ticker(self, tick_s: float) -> None:
        while not self._stop.wait(tick_s):
            with self._lock:
                self._tick += 1
                self._draw()


def _is_terminal(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False
