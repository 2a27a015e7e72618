"""A fork server: import langgraph once per version environment, fork a process per op.

Importing langgraph, langchain-core and psycopg takes about two seconds, and a
gate runs nine worker ops. ``python -m migrator.worker --serve`` imports them
once, then reads one line per op on stdin: ``{"socket": PATH, "stderr": PATH}``.
For each it forks a child that starts its own session (so the host can kill its
process group), sends its stderr to ``stderr``, connects to the host's Unix
socket at ``socket``, reads ``OP\\n`` + the JSON request until EOF and writes the
one JSON response back, exactly as ``python -m migrator.worker OP`` would over
its pipes. The server answers ``{"pid": N}`` on stdout and exits when stdin
closes (the host ended its session or died).

Every op still runs in a process of its own, forked from a state in which
nothing but imports happened: no op sees what another op left behind.

Stdlib only (plus what it preloads, when importable); runs in every version env.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import socket
import sys
from typing import Any

from migrator.worker import priority, protocol

#: Imported before the first fork; each is optional (not every version has all).
PRELOAD = (
    "psycopg",
    "langchain_core.messages",
    "langgraph.graph",
    "langgraph.checkpoint.postgres",
    "langgraph.checkpoint.serde.jsonplus",
    "migrator.worker.encode",
    "migrator.worker.op_snapshot",
)


def _preload() -> None:
    for name in PRELOAD:
        with contextlib.suppress(Exception):  # the op itself reports a broken import
            importlib.import_module(name)


def _child(spec: dict[str, Any]) -> None:
    """Run one op in the forked child; never returns."""
    code = 1
    try:
        os.setsid()
        priority.match_autogroup()  # the new session's autogroup: the server's nice value
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        err = os.open(spec["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(err, 2)
        os.dup2(err, 1)  # what libraries print never reaches the response channel
        sys.stdout = sys.stderr
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(spec["socket"])
            chunks = []
            while chunk := conn.recv(1 << 20):
                chunks.append(chunk)
            data = b"".join(chunks)
            op, _, payload = data.partition(b"\n")
            from migrator.worker.__main__ import _run

            response = _run([op.decode("utf-8")], payload)
            out, ok = protocol.encode(response)
            sys.stderr.flush()
            conn.sendall(out)
            code = 0 if ok else 1
    except BaseException:  # noqa: BLE001 - the host sees "no response" and the stderr tail
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os._exit(code)


def serve() -> int:
    """The fork server's loop (see the module docstring)."""
    _preload()
    # Children are reaped by the kernel; each child restores the default.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    control_out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for line in sys.stdin:
        try:
            spec = json.loads(line)
            pid = os.fork()
        except Exception as exc:  # noqa: BLE001 - tell the host; it falls back to a plain spawn
            control_out.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
            control_out.flush()
            continue
        if pid == 0:
            _child(spec)
        control_out.write(json.dumps({"pid": pid}) + "\n")
        control_out.flush()
    return 0
