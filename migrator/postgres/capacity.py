"""How many connections a parallel job may take: ``--jobs`` capped by the server and the work.

``backup --jobs 300`` once used up every connection the server had (the app's
too), and ``dump --jobs 16`` started 16 workers for 10 threads. :func:`cap_jobs`
takes the smaller of what was asked, what the work can use and what the server
can spare, leaving a tenth of ``max_connections`` (at least 2) to everyone else,
and says why when it cut.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

#: ``max_connections`` minus the slots only superusers (and ``pg_use_reserved_connections``)
#: may use, minus the client connections open now.
FREE_CONNECTIONS_SQL = """
    SELECT current_setting('max_connections')::int,
           current_setting('superuser_reserved_connections')::int
             + coalesce(nullif(current_setting('reserved_connections', true), '')::int, 0),
           (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')
"""
#: At most ``limit`` distinct thread ids (cheap with the primary key's index).
DISTINCT_THREADS_SQL = (
    "SELECT count(*) FROM (SELECT DISTINCT thread_id FROM checkpoints LIMIT %s) AS t"
)


@dataclass(frozen=True)
class Capacity:
    """What the server can spare.

    Attributes:
        max_connections: The server's ``max_connections``.
        free: Connections a new client may still open.
        spare: Of ``free``, what this tool may take (the rest stays for the app).
    """

    max_connections: int
    free: int
    spare: int


def server_capacity(conn: psycopg.Connection[Any]) -> Capacity:
    """The connections this tool may still open on ``conn``'s server."""
    row = conn.execute(FREE_CONNECTIONS_SQL).fetchone()
    assert row is not None
    total, reserved, used = int(row[0]), int(row[1]), int(row[2])
    free = max(0, total - reserved - used)
    keep = max(2, total // 10)
    return Capacity(max_connections=total, free=free, spare=max(0, free - keep))


def distinct_threads(conn: psycopg.Connection[Any], limit: int) -> int:
    """Distinct ``thread_id`` values in ``checkpoints`` (search_path), counted to ``limit``."""
    row = conn.execute(DISTINCT_THREADS_SQL, (limit,)).fetchone()
    return int(row[0]) if row else 0


def cap_jobs(
    requested: int,
    *,
    capacity: Capacity,
    per_job: int = 1,
    work: int | None = None,
    work_name: str = "thread(s)",
) -> tuple[int, str | None]:
    """``requested`` jobs, capped by the work there is and the connections to spare.

    Args:
        requested: ``--jobs`` as given.
        capacity: From :func:`server_capacity`.
        per_job: Connections each job opens.
        work: Units of work that can run apart (e.g. threads); None: no cap.
        work_name: What a unit of work is called, for the note.

    Returns:
        ``(jobs, note)``: at least 1; ``note`` says why it is less than asked (or None).
    """
    jobs, reasons = requested, []
    if work is not None and work < jobs:
        jobs = max(1, work)
        reasons.append(f"there are only {work} {work_name} to share out")
    by_server = max(1, capacity.spare // max(1, per_job))
    if by_server < jobs:
        jobs = by_server
        reasons.append(
            f"the server has {capacity.free} free connection(s) of {capacity.max_connections} "
            f"and a tenth stays for the application ({per_job} per job)"
        )
    if jobs >= requested:
        return requested, None
    return jobs, f"--jobs {requested} lowered to {jobs}: {'; '.join(reasons)}"
