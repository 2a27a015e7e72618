"""What the CLI prints passes through :func:`migrator.errors.scrub`: no password
reaches a terminal, whatever printed it."""

from __future__ import annotations

import contextlib
import re
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from migrator.errors import scrub
from migrator.postgres.dsn import remember_dsn


class _ScrubbedStream:
    """``sys.stdout``/``sys.stderr`` while the CLI runs: every password is masked.

    The output boundary: whatever prints (click, rich, tracebacks, warnings, code
    added later) passes :func:`migrator.errors.scrub`. Text goes out a line at a
    time, or on ``flush()``; a flush keeps back a last word that may be a DSN cut
    in two, until its line ends. There is no ``buffer``: bytes would get past.
    """

    _HOLD_MAX = 1 << 16
    #: A trailing word that may be the first half of a DSN or a password=... pair.
    _MAYBE_DSN = re.compile(r"//|:/|pass|pwd", re.IGNORECASE)

    def __init__(self, inner: TextIO) -> None:
        self._inner = inner
        self._pending = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            self._pending += text
            cut = self._pending.rfind("\n") + 1
            if len(self._pending) > self._HOLD_MAX:
                cut = len(self._pending)
            self._emit(cut)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        with self._lock:
            word = self._pending.rsplit(None, 1)[-1] if self._pending.strip() else ""
            held = len(word) if self._pending.endswith(word) and self._MAYBE_DSN.search(word) else 0
            self._emit(len(self._pending) - held)
        self._inner.flush()

    def close_out(self) -> None:
        """Write everything still held back (the run is over)."""
        with self._lock:
            self._emit(len(self._pending))
        self._inner.flush()

    def write_unscrubbed(self, text: str) -> None:
        """Write ``text`` as is: only for a value that is what the command produces."""
        self.close_out()
        self._inner.write(text)
        self._inner.flush()

    def _emit(self, cut: int) -> None:
        if cut > 0:
            self._inner.write(scrub(self._pending[:cut]))
            self._pending = self._pending[cut:]

    def __getattr__(self, name: str) -> Any:
        if name == "buffer":
            raise AttributeError(name)
        return getattr(self._inner, name)


@contextlib.contextmanager
def _scrubbed_output() -> Iterator[None]:
    """Route ``sys.stdout`` and ``sys.stderr`` through :class:`_ScrubbedStream`."""
    saved = sys.stdout, sys.stderr
    if isinstance(saved[0], _ScrubbedStream) or saved[0] is None or saved[1] is None:
        yield
        return
    sys.stdout, sys.stderr = _ScrubbedStream(saved[0]), _ScrubbedStream(saved[1])
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, _ScrubbedStream):
                with contextlib.suppress(Exception):
                    stream.close_out()
        sys.stdout, sys.stderr = saved


def _remember_secrets(values: Iterable[object]) -> None:
    """Remember the passwords of DSNs among option values, to mask them anywhere."""
    for value in values:
        items = value if isinstance(value, (tuple, list)) else (value,)
        for item in items:
            if isinstance(item, str) and item:
                remember_dsn(item)
