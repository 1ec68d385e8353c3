"""Progress of the long commands, on stderr so that stdout stays their result (JSON a
script parses): on a terminal, a bar with the rate and the time left (rich); elsewhere (a
log, CI) a plain line every REDACT_PROGRESS_SECONDS, such as `loaded 120,000 of 1,000,000
records (24,000/s)`, and a last one at the end if any was printed (with 0 seconds, a line
at each step the work reports). A command done sooner prints nothing.

The work reports through a callback (`Progress.update`, given to models/ as a plain
function), or is polled (`poll`: a job worked on by code that reports nothing)."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as Bar
from rich.text import Text

from models import database
from models.jobs import RedactionJob

TERMINAL_TICK_SECONDS = 0.5
POLL_SECONDS = 0.1  # how often polled work is looked at with REDACT_PROGRESS_SECONDS=0

Poll = Callable[[], tuple[int, int | None]]


class _Rate(ProgressColumn):
    """`24,000 records/s`: rich's own speed columns speak of bytes."""

    def __init__(self, noun: str) -> None:
        super().__init__()
        self.noun = noun

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} {self.noun}/s" if speed else f"- {self.noun}/s")


class Progress:
    """Shows `verb done of total noun` while the work goes on; use it as a context
    manager, and give `update` to the work (or `poll` to read its progress)."""

    def __init__(
        self,
        verb: str,
        noun: str,
        *,
        seconds: float,
        total: int | None = None,
        poll: Poll | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.verb, self.noun, self.total, self.poll = verb, noun, total, poll
        self.done = 0
        self.stream = stream or sys.stderr
        self.console = Console(file=self.stream)
        self.terminal = self.console.is_terminal
        self.every_step = not self.terminal and seconds <= 0
        if self.terminal:
            self.period = TERMINAL_TICK_SECONDS
        else:
            self.period = POLL_SECONDS if self.every_step else seconds
        self.started = time.monotonic()
        self.printed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="progress", daemon=True)
        self._bar: Bar | None = None
        self._task = TaskID(0)

    def update(self, done: int, total: int | None = None) -> None:
        """The work has done `done` (of `total`, if it says); cheap, from any thread."""
        self.done = done
        if total is not None:
            self.total = total
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=self.total)
        elif self.every_step:
            self._line()

    def __enter__(self) -> Progress:
        if self.terminal:
            self._bar = Bar(
                TextColumn(f"{self.verb} {self.noun}"),
                BarColumn(),
                MofNCompleteColumn(),
                _Rate(self.noun),
                TimeRemainingColumn(),
                console=self.console,
                # rich would send what is printed meanwhile through the bar's console, on
                # stderr: the command's result stays on stdout.
                redirect_stdout=False,
            )
            self._task = self._bar.add_task("", total=self.total)
            self._bar.start()
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        if self._bar is not None:
            if kind is None:
                self._look()
            self._bar.stop()
        elif kind is None and self.every_step:
            self._look()  # polled work: a line where it ended
        elif kind is None and self.printed:
            self._look()
            self._line()  # where it ended

    def line(self) -> str:
        """`loaded 120,000 of 1,000,000 records (24,000/s)`."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        of = f" of {self.total:,}" if self.total is not None else ""
        return f"{self.verb} {self.done:,}{of} {self.noun} ({self.done / elapsed:,.0f}/s)"

    def _line(self) -> None:
        print(self.line(), file=self.stream, flush=True)
        self.printed = True

    def _look(self) -> None:
        """Read polled work's progress."""
        if self.poll is not None:
            # a failed look at the work must not stop the work
            with contextlib.suppress(Exception):
                self.update(*self.poll())

    def _tick(self) -> None:
        while not self._stop.wait(self.period):
            self._look()
            if self._bar is None and not self.every_step:
                self._line()


def job_progress(job_id: str, seconds: float) -> Progress:
    """The progress of a job run in this process, read from its row (the run records its
    counts with each batch it commits)."""

    def poll() -> tuple[int, int | None]:
        with database.connection_context():
            job = RedactionJob.get(RedactionJob.id == job_id)
        return job.redacted + job.already_redacted + job.skipped, job.records or None

    return Progress("redacted", "records", seconds=seconds, poll=poll)
