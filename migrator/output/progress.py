"""Progress lines for long work: the worker ops (dump, restore) and bulk loads.

Each worker rewrites a small JSON file while it works
(:mod:`migrator.worker.progressfile`). :class:`PartProgress` gives every part its
file, prints the sum over all parts every :data:`REPORT_EVERY_S` (threads done
of the total, checkpoints, rate, time left), and tells
:func:`migrator.envs.run_worker` how long each worker has been still, so a
worker is killed after ``timeout`` seconds *without progress*, not after a fixed
time: a restore of tens of millions of checkpoints is not cut off at an hour,
and one stuck on a lock is still caught. :class:`ByteProgress` does the same
for work the host streams itself (``restore-backup``'s COPY of each table).
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

Progress = Callable[[str], None]

#: Seconds between two progress lines.
REPORT_EVERY_S = 10.0


class PartProgress:
    """The progress files of ``parts`` workers, reported as one line now and then.

    Use as a context manager: the reporting thread runs inside it, and the files
    (in a private temporary directory) are gone after it.

    Args:
        what: The op, first word of every line (``"dump"``, ``"restore"``).
        parts: How many workers report.
        progress: Where the lines go.
        threads: Threads in all, when the host knows it (a restore); else the
            sum the workers report once they have enumerated theirs (a dump).
        every: Seconds between two lines (default :data:`REPORT_EVERY_S`).
    """

    def __init__(
        self,
        what: str,
        parts: int,
        progress: Progress,
        *,
        threads: int | None = None,
        every: float | None = None,
    ) -> None:
        self.what, self.parts, self.progress = what, parts, progress
        self.threads = threads
        self.every = REPORT_EVERY_S if every is None else every
        self._dir = tempfile.TemporaryDirectory(prefix="langgraph-migrator-progress-")
        self._started = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._report_loop, daemon=True)

    def path(self, part: int) -> str:
        """The file worker ``part`` writes (its request's ``progress_path``)."""
        return str(Path(self._dir.name) / f"part{part}.json")

    def idle(self, part: int) -> Callable[[], float]:
        """Seconds since worker ``part`` last moved (``run_worker``'s ``idle``)."""
        path = Path(self.path(part))

        def seconds() -> float:
            try:
                moved = path.stat().st_mtime
            except OSError:
                moved = self._started
            return time.time() - max(moved, self._started)

        return seconds

    def state(self) -> dict[str, Any]:
        """The sum over the parts: ``threads``, ``checkpoints``, ``of`` (None: not known yet)."""
        threads = checkpoints = 0
        of: int | None = 0
        for part in range(self.parts):
            try:
                one = json.loads(Path(self.path(part)).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                one = {}
            threads += int(one.get("threads") or 0)
            checkpoints += int(one.get("checkpoints") or 0)
            of = None if of is None or one.get("of") is None else of + int(one["of"])
        return {
            "threads": threads,
            "checkpoints": checkpoints,
            "of": self.threads if self.threads is not None else of,
        }

    def line(self, state: dict[str, Any] | None = None, now: float | None = None) -> str:
        """The progress line for ``state`` (default: the current :meth:`state`)."""
        state = self.state() if state is None else state
        elapsed = max((time.time() if now is None else now) - self._started, 1e-9)
        done, of, checkpoints = state["threads"], state["of"], state["checkpoints"]
        text = f"{self.what}: {done:,}"
        if of:
            text += f"/{of:,} threads ({100 * done / of:.1f}%)"
        else:
            text += " threads"
        text += f", {checkpoints:,} checkpoints, {checkpoints / elapsed:,.0f}/s"
        return text + (_left(elapsed, done, of) if of else "")

    def __enter__(self) -> PartProgress:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._dir.cleanup()

    def _report_loop(self) -> None:
        last: dict[str, Any] | None = None
        moved = time.time()
        while not self._stop.wait(self.every):
            now, state = time.time(), self.state()
            if state != last:
                last, moved = state, now
            line = self.line(state, now)
            if now - moved >= self.every:  # say so: the operator is watching for this
                line += f"; no progress for {_duration(now - moved)}"
            self.progress(line)


class ByteProgress:
    """``what: 1,234/8,000 MiB (15.4%), 41 MiB/s, about 2m45s left``, every ``every`` s.

    Args:
        what: The first words of every line.
        total: Bytes in all.
        progress: Where the lines go.
        every: Seconds between two lines (default :data:`REPORT_EVERY_S`).
    """

    def __init__(
        self, what: str, total: int, progress: Progress, *, every: float | None = None
    ) -> None:
        self.what, self.total, self.progress = what, max(total, 1), progress
        self.every = REPORT_EVERY_S if every is None else every
        self.done = 0
        self._started = self._said = time.monotonic()

    def add(self, count: int) -> None:
        """Count ``count`` more bytes; say where things stand if it is time."""
        self.done += count
        now = time.monotonic()
        if now - self._said >= self.every:
            self._said = now
            self.progress(self.line(now))

    def line(self, now: float | None = None) -> str:
        """The line for the bytes counted so far."""
        elapsed = max((time.monotonic() if now is None else now) - self._started, 1e-9)
        mib, total = self.done / 2**20, self.total / 2**20
        text = f"{self.what}: {mib:,.0f}/{total:,.0f} MiB ({100 * self.done / self.total:.1f}%)"
        return text + f", {mib / elapsed:,.0f} MiB/s" + _left(elapsed, self.done, self.total)


def _left(elapsed: float, done: float, total: float) -> str:
    """``", about 2m45s left"`` at the rate so far; empty before the start and at the end."""
    if not 0 < done < total:
        return ""
    return f", about {_duration(elapsed * (total - done) / done)} left"


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
