"""A progress line on stderr: phase name, step i/N, elapsed seconds.

On a terminal the line is redrawn in place (and its clock ticks while a step
runs); anywhere else (CI logs, pipes) each step prints one plain line, so logs
stay readable. ``quiet`` prints nothing. Output goes to stderr so it never
mixes with a benchmark's table or JSON on stdout.
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import TextIO

__all__ = ["Phase", "Progress"]

BAR_WIDTH = 20
TICK_S = 0.5


class Progress:
    """Where and how progress is shown; opens one :class:`Phase` at a time.

    ``stream`` defaults to ``sys.stderr`` (looked up when used); ``tty``
    overrides whether it is treated as a terminal.
    """

    def __init__(
        self, *, quiet: bool = False, stream: TextIO | None = None, tty: bool | None = None
    ) -> None:
        self.quiet = quiet
        self._stream = stream
        self._tty = tty

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    @property
    def is_tty(self) -> bool:
        """Whether lines are redrawn in place."""
        if self._tty is not None:
            return self._tty
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty())

    def phase(self, name: str, total: int) -> Phase:
        """A phase of ``total`` steps (e.g. rounds); use it as a context manager."""
        return Phase(self, name, total)


class Phase:
    """One named phase: call :meth:`step` as each step (e.g. a round) begins."""

    def __init__(self, progress: Progress, name: str, total: int) -> None:
        if total < 0:
            raise ValueError(f"total must be >= 0, got {total}")
        self.progress = progress
        self.name = name
        self.total = total
        self.done = 0  # steps begun so far
        self.label = ""
        self._t0 = time.monotonic()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._ticker: threading.Thread | None = None
        self._drawn = False

    @property
    def elapsed_s(self) -> float:
        """Seconds since the phase began."""
        return time.monotonic() - self._t0

    def __enter__(self) -> Phase:
        self._t0 = time.monotonic()
        p = self.progress
        if not p.quiet and p.is_tty:
            self._draw()
            self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._ticker.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(failed=exc_type is not None)

    def step(self, label: str = "") -> None:
        """Step ``done + 1`` of ``total`` begins; ``label`` says which (e.g. a variant name)."""
        with self._lock:
            self.done += 1
            self.label = label
        p = self.progress
        if p.quiet:
            return
        if p.is_tty:
            self._draw()
        else:
            self._line(f"{self._counter()}{self._label()}, {self.elapsed_s:.1f} s")

    def close(self, *, failed: bool = False) -> None:
        """End the phase: one final line (``done`` or ``stopped``) with the time it took."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._ticker is not None:
            self._ticker.join()
        p = self.progress
        if p.quiet:
            return
        word = "stopped" if failed else "done"
        text = f"{word} {self.done}/{self.total} in {self.elapsed_s:.1f} s"
        if p.is_tty:
            self._write(f"\r\x1b[2K{self.name}: {text}\n")
        else:
            self._line(text)

    # -- drawing ----------------------------------------------------------------

    def _counter(self) -> str:
        return f"{self.done}/{self.total}" if self.total else f"{self.done}"

    def _label(self) -> str:
        return f" {self.label}" if self.label else ""

    def _line(self, text: str) -> None:
        self._write(f"{self.name}: {text}\n")

    def _draw(self) -> None:
        filled = BAR_WIDTH * min(self.done, self.total) // self.total if self.total else 0
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        self._write(
            f"\r\x1b[2K{self.name} [{bar}] {self._counter()}{self._label()}  {self.elapsed_s:.1f} s"
        )
        self._drawn = True

    def _tick(self) -> None:
        while not self._closed.wait(TICK_S):
            self._draw()

    def _write(self, text: str) -> None:
        with self._lock:
            stream = self.progress.stream
            stream.write(text)
            stream.flush()
