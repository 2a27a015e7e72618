"""Named pause points for the reliability suite: off unless ``LANGGRAPH_MIGRATOR_PAUSE_AT`` is set.

With ``LANGGRAPH_MIGRATOR_PAUSE_AT=NAME[,NAME...]`` and
``LANGGRAPH_MIGRATOR_PAUSE_FILE=PATH`` in its environment, a process (the tool
or one of its workers) that reaches :func:`pause_point` ``NAME`` writes
``"<pid> <NAME> [<where>]"`` to ``PATH`` and waits until ``PATH`` is deleted. A test can
then ``kill -9`` it, restart the server or terminate its connection at exactly
that phase, or delete the file to let it go on. Without both variables a point
costs one dict lookup. Used by ``tests/reliability/`` (``docs/reliability.md``).

Points: ``lock.held`` (the migrator lock taken), ``setup.v<N>`` (``setup()``
about to run ``MIGRATIONS[N]``), ``setup.ledger.v<N>`` (``MIGRATIONS[N]``
committed, its ledger row not yet written), ``setup.done``, ``dump.start``,
``restore.start`` (worker ops); on the tool's side: ``repair.<N>`` (``migrate``
about to run its N-th repair, from 0; where: the database), ``ledger.record``
(``migrate`` done, its run not yet recorded), ``ledger.written`` (the run's row
inserted, not committed), ``swap.locked`` (a swap's tables locked and moved, not
committed; where: the shadow schema).

Stdlib only: it runs in every version environment.
"""

from __future__ import annotations

import os
import time
from typing import Any

PAUSE_AT_ENV = "LANGGRAPH_MIGRATOR_PAUSE_AT"
PAUSE_FILE_ENV = "LANGGRAPH_MIGRATOR_PAUSE_FILE"
POLL_S = 0.02


def armed(name: str) -> bool:
    """Whether :func:`pause_point` ``name`` would pause in this process."""
    wanted = os.environ.get(PAUSE_AT_ENV)
    return bool(wanted and os.environ.get(PAUSE_FILE_ENV) and name in wanted.split(","))


def armed_any(prefix: str) -> bool:
    """Whether any armed point's name starts with ``prefix``."""
    wanted = os.environ.get(PAUSE_AT_ENV)
    if not (wanted and os.environ.get(PAUSE_FILE_ENV)):
        return False
    return any(n.startswith(prefix) for n in wanted.split(","))


def pause_point(name: str, where: str = "") -> None:
    """Pause here while the test holds the pause file (see the module doc); else return.

    Args:
        name: The point.
        where: Written after the name (e.g. the database), for the test to tell runs apart.
    """
    if not armed(name):
        return
    path = os.environ[PAUSE_FILE_ENV]
    tmp = f"{path}.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()} {name} {where}".rstrip())
    while True:  # one paused process at a time: wait for another's file to go first
        try:
            os.link(tmp, path)  # atomic: the test never reads a half-written file
            break
        except FileExistsError:
            time.sleep(POLL_S)
    os.unlink(tmp)
    while os.path.exists(path):
        time.sleep(POLL_S)


def setup_cursor_factory(migrations: list[str], base: Any) -> Any:
    """A cursor class pausing at ``setup.v<N>`` / ``setup.ledger.v<N>`` (``setup()``'s steps)."""
    index = {m: v for v, m in enumerate(migrations)}

    class PausingCursor(base):  # type: ignore[misc]
        last_v: int | None = None

        def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            text = query if isinstance(query, str) else str(query)
            if text in index:
                self.last_v = index[text]
                pause_point(f"setup.v{self.last_v}", self.connection.info.dbname)
            elif "INSERT INTO checkpoint_migrations" in text and self.last_v is not None:
                pause_point(f"setup.ledger.v{self.last_v}", self.connection.info.dbname)
            return super().execute(query, *args, **kwargs)

    return PausingCursor
