"""Logical dump/restore: the fallback when an in-place ``setup()`` upgrade is not safe.

Dump (worker op ``dump`` in the OLD env) reads every thread through the old
saver's public API into a gzip JSON-lines file plus a manifest
(``<dump>.manifest.json``: counts per thread, type inventory, sha256). Restore
(worker op ``restore`` in the NEW env) rebuilds the tables with the new
``setup()`` in a shadow schema, writes through the new saver (ids, parents,
channel versions and metadata preserved), optionally transforms, verifies, and
swaps the shadow in atomically; the live tables move to
``langgraph_migrator_old_<ts>`` until :func:`cleanup`. See ``docs/dump-restore.md``.

The dump is verified (sha256, size, format) and its types checked against the
allowlist before anything is written; every failure after that leaves the live
tables untouched (the shadow schema is dropped).
"""

from __future__ import annotations

from migrator.dumprestore.common import (
    BUILTIN_TRANSFORMS,
    IDLE_TIMEOUT_S,
    OLD_PREFIX,
    SHADOW_PREFIX,
    SWAP_TABLES,
    VERIFY_MODES,
    WRITE_MODES,
    RestoreResult,
    run_parallel,
)
from migrator.dumprestore.dump import dump_threads
from migrator.dumprestore.fallback import default_jobs, run_fallback
from migrator.dumprestore.restore import _swap, cleanup, restore_dump

__all__ = [
    "BUILTIN_TRANSFORMS",
    "IDLE_TIMEOUT_S",
    "OLD_PREFIX",
    "SHADOW_PREFIX",
    "SWAP_TABLES",
    "VERIFY_MODES",
    "WRITE_MODES",
    "RestoreResult",
    "_swap",
    "cleanup",
    "default_jobs",
    "dump_threads",
    "restore_dump",
    "run_fallback",
    "run_parallel",
]
