"""A worker dies with the process that started it.

``kill -9`` of the tool (an OOM kill, a CI runner's hard stop) used to leave
its worker running: re-parented, still inside ``setup()``, a dump or a restore,
without the migrator lock the tool's own session held, so a rerun raced it.
:func:`follow_parent` starts a daemon thread that notices the re-parenting
within :data:`POLL_S` and kills the worker's process group (the worker leads
its own session). A forked op's parent is the fork server, which exits when
the tool does, so the same check covers it.

Stdlib only: it runs in every version environment.
"""

from __future__ import annotations

import os
import signal
import threading
import time

POLL_S = 0.2


def follow_parent(poll: float = POLL_S) -> None:
    """From now on, die (with the process group) within ``poll`` s of the parent's death."""
    parent = os.getppid()
    if parent == 1:  # already orphaned, or started by init: nothing to follow
        return

    def watch() -> None:
        while True:
            time.sleep(poll)
            if os.getppid() != parent:
                os.killpg(os.getpgrp(), signal.SIGKILL)

    threading.Thread(target=watch, name="lifeline", daemon=True).start()
