"""Progress a long worker op reports while it runs: a small JSON file the host polls.

A worker's only other channel to the host is its final JSON response, and a dump
or restore of millions of checkpoints runs for many minutes. So the op rewrites
``{"threads", "checkpoints", "of"}`` in ``request["progress_path"]`` (atomically,
at most once per :data:`EVERY_S`); the host turns the files of its workers into
progress lines and kills a worker only when its file stops moving (an idle
timeout instead of a fixed one, :mod:`migrator.output.progress`). Only real work
advances it: a worker stuck on a lock or a query stays still and is caught.

Stdlib only (runs in every version environment).
"""

from __future__ import annotations

import json
import os
import time

#: Seconds between two writes of the file (the last state is always written).
EVERY_S = 1.0


class ProgressFile:
    """Counts threads and checkpoints done and writes them to ``path`` now and then.

    Args:
        path: The file to (re)write; None: count only.
        of: Threads this op will handle, when known.
    """

    def __init__(self, path: str | None, of: int | None = None) -> None:
        self.path = path
        self.of = of
        self.threads = 0
        self.checkpoints = 0
        self._written = 0.0
        self._write(time.monotonic())

    def total(self, of: int) -> None:
        """Set the number of threads to expect (once they are enumerated)."""
        self.of = of
        self._write(time.monotonic())

    def advance(self, threads: int = 0, checkpoints: int = 0) -> None:
        """Count work done; write the file if :data:`EVERY_S` has passed."""
        self.threads += threads
        self.checkpoints += checkpoints
        now = time.monotonic()
        if now - self._written >= EVERY_S:
            self._write(now)

    def finish(self) -> None:
        """Write the final counts."""
        self._write(time.monotonic())

    def _write(self, now: float) -> None:
        self._written = now
        if self.path is None:
            return
        state = {"threads": self.threads, "checkpoints": self.checkpoints, "of": self.of}
        tmp = f"{self.path}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(state, fh)
        os.replace(tmp, self.path)
