"""Progress on stderr that one flag silences: tqdm bars, and a clock that names every phase of a run.

A run's phases (the battery, the restart check, escalation, the cross-check, the sanity checks, each
active-test construction, repeated inference, the example panels) each say when they start and how
long they took, and while one runs a heartbeat line says which, every `HEARTBEAT_SECONDS`: a default
run never stands still on screen for longer without a word. The seconds are recorded per phase.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
HEARTBEAT_SECONDS = 10.0


def progress(items: Iterable[T], desc: str, disable: bool = False, total: int | None = None):
    """Wrap `items` in a tqdm bar unless `disable`; bars clear themselves when done."""
    return tqdm(items, desc=desc, disable=disable, total=total, leave=False, dynamic_ncols=True)


def say(text: str) -> None:
    """One line on stderr that does not tear a progress bar."""
    tqdm.write(text, file=sys.stderr)


class PhaseClock:
    """Names each phase as it starts and ends, beats every `interval` seconds while one runs (unless `quiet`),
    and records each phase's seconds (`seconds`, by name, in the order they first ran)."""

    def __init__(self, quiet: bool = True, interval: float = HEARTBEAT_SECONDS) -> None:
        self.quiet, self.interval = quiet, interval
        self.seconds: dict[str, float] = {}
        self._running: list[tuple[str, float]] = []
        self._stop = threading.Event()
        self._beating: threading.Thread | None = None

    @contextmanager
    def phase(self, name: str, note: str = "") -> Iterator[None]:
        """Time the block as phase `name` (nested phases are named by the innermost); `note` follows its name."""
        start = time.perf_counter()
        if not self.quiet:
            say(f"▸ {name}{f' ({note})' if note else ''}")
            self._start_beating()
        self._running.append((name, start))
        try:
            yield
        finally:
            self._running.pop()
            elapsed = time.perf_counter() - start
            self.seconds[name] = self.seconds.get(name, 0.0) + elapsed
            if not self.quiet:
                say(f"  {name}: {elapsed:.1f} s")

    def _start_beating(self) -> None:
        if self._beating is None:
            self._beating = threading.Thread(target=self._beat, name="phase-heartbeat", daemon=True)
            self._beating.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            running = list(self._running)
            if running:
                name, start = running[-1]
                say(f"  … {name}: {time.perf_counter() - start:.0f} s so far")

    def close(self) -> None:
        """Stop the heartbeat."""
        self._stop.set()
        if self._beating is not None:
            self._beating.join()
            self._beating = None
