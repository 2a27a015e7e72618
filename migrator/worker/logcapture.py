"""What langgraph logs while an op runs, handed back to the host with the op's answer.

langgraph warns through ``logging`` about things an upgrade is made of: a task that
wrote to an unknown channel (carried-over writes the new graph ignores), a type
deserialized without being on ``allowed_msgpack_modules``. In a worker those lines
went to a stderr nobody read when the op succeeded. :func:`capture` keeps the
distinct WARNING-or-worse messages of the ``langgraph`` loggers (the first
:data:`LIMIT`, each cut at :data:`WIDTH` characters) for the response's ``log``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

#: Distinct messages kept per op.
LIMIT = 20
#: Characters kept per message.
WIDTH = 300
#: The loggers listened to (and their children).
LOGGERS = ("langgraph",)


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = " ".join(record.getMessage().split())[:WIDTH]
        except Exception:  # noqa: BLE001 - a bad format string must not fail the op
            text = str(record.msg)[:WIDTH]
        line = f"{record.name}: {text}"
        if line in self.messages:
            return
        if len(self.messages) >= LIMIT:
            self.dropped += 1
            return
        self.messages.append(line)


@contextmanager
def capture() -> Iterator[list[str]]:
    """Collect the langgraph loggers' warnings while the block runs (they still print).

    Yields:
        The list the messages are appended to (a last line counts the ones left out).
    """
    keep = _Keep()
    loggers = [logging.getLogger(name) for name in LOGGERS]
    for logger in loggers:
        logger.addHandler(keep)
    out: list[str] = []
    try:
        yield out
    finally:
        for logger in loggers:
            logger.removeHandler(keep)
        out.extend(keep.messages)
        if keep.dropped:
            out.append(f"... and {keep.dropped} more distinct message(s)")
