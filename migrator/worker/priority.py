"""The tool's own CPU priority, lowered while it works beside a live application.

``migrate`` runs next to an application that keeps writing checkpoints, and on a
busy host its plan, backup and workers take CPU the application's writes wait for
(``bench/bench_load.py`` measured that, not lock waits, is what raises the
writers' tail latency). :func:`lower_priority` raises the calling thread's nice
value; on Linux a nice value belongs to a thread and is inherited by the threads
and processes it starts afterwards, so the backup's threads and every worker
follow it.

Autogroups: with ``kernel.sched_autogroup_enabled`` (the default on most Linux
distributions) the scheduler first shares the CPU between *sessions* and only then
between the processes of one session, and nice values count only inside a
session. Workers and fork-server children start sessions of their own
(``setsid``, so that a timeout can kill their whole group); each would be back at
full weight against the application however nice it is. :func:`match_autogroup`,
called by every worker process that leads its own session, gives its autogroup
the nice value the process inherited.

Best effort everywhere: a platform or a sandbox that refuses leaves the priority
as it was. Never raises a priority (that would need privileges, and it is not
the tool's to take). Stdlib only: it runs in every version environment.
"""

from __future__ import annotations

import contextlib
import os

AUTOGROUP_PATH = "/proc/self/autogroup"
#: ``nice`` values the kernel accepts.
MAX_NICE = 19


def current_nice() -> int:
    """The calling thread's nice value (0 where the platform has none)."""
    try:
        return os.getpriority(os.PRIO_PROCESS, 0)
    except (AttributeError, OSError):
        return 0


def lower_priority(nice: int) -> int:
    """Raise the calling thread's nice value to at least ``nice``; never lower it.

    Args:
        nice: The wanted nice value (0 or less: leave it; above 19: 19).

    Returns:
        The nice value now in force.
    """
    nice = min(nice, MAX_NICE)
    if nice > current_nice():
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, 0, nice)
    match_autogroup()
    return current_nice()


def autogroup_nice(path: str = AUTOGROUP_PATH) -> int | None:
    """The nice value of this process's autogroup, or None without autogroups."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    _, _, value = text.strip().rpartition(" nice ")
    try:
        return int(value)
    except ValueError:
        return None


def match_autogroup(path: str = AUTOGROUP_PATH) -> None:
    """A process leading its own session gives its autogroup its own (higher) nice value.

    Only a session leader owns its autogroup alone at this point; a process that
    shares its parent's session leaves the group (and the parent's other
    processes) alone.
    """
    nice = current_nice()
    if nice <= 0:
        return
    try:
        if os.getsid(0) != os.getpid():
            return
    except (AttributeError, OSError):
        return
    group = autogroup_nice(path)
    if group is None or group >= nice:
        return
    with contextlib.suppress(OSError), open(path, "w") as f:
        f.write(str(nice))
