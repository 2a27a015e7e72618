"""Worker entry point: ``python -m migrator.worker OP``.

Reads one JSON object from stdin, runs ``migrator.worker.op_<OP>.run(request)``
and writes exactly one JSON response to stdout. While the op runs, file
descriptor 1 points at stderr, so whatever libraries (or C code, or child
processes) print cannot corrupt the response.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
from typing import Any

from migrator.worker import lifeline, logcapture, priority, protocol

_OP_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _load_op(op: str) -> Any:
    if not _OP_NAME.match(op):
        raise protocol.UnknownOpError(f"unknown op {op!r}")
    module_name = f"migrator.worker.op_{op}"
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise protocol.UnknownOpError(f"unknown op {op!r}") from None
        raise


def _run(argv: list[str], stdin_data: bytes) -> dict[str, Any]:
    lifeline.follow_parent()
    try:
        if len(argv) != 1:
            raise protocol.UnknownOpError("usage: python -m migrator.worker OP < request.json")
        request = json.loads(stdin_data.decode("utf-8")) if stdin_data.strip() else {}
        if not isinstance(request, dict):
            raise TypeError(f"request must be a JSON object, got {type(request).__name__}")
        module = _load_op(argv[0])
        with logcapture.capture() as logged:
            result = module.run(request)
        if not isinstance(result, dict):
            raise TypeError(f"op {argv[0]!r} returned {type(result).__name__}, not a dict")
        response = protocol.ok_response(result)
        if logged:
            response["log"] = logged
        return response
    except (Exception, SystemExit) as exc:  # every failure is reported as data
        return protocol.error_response(exc)


def main(argv: list[str] | None = None) -> int:
    """Run one op and write its response.

    Args:
        argv: ``[OP]``; defaults to ``sys.argv[1:]``.

    Returns:
        0 when the op succeeded, 1 when it failed (the response says why).
    """
    args = sys.argv[1:] if argv is None else argv
    priority.match_autogroup()  # a session of its own: keep the nice value it inherited
    if args == ["--serve"]:  # a fork server: one process per op, imports done once
        from migrator.worker import forkserver

        return forkserver.serve()
    stdin_data = sys.stdin.buffer.read()
    sys.stdout.flush()
    response_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        response = _run(args, stdin_data)
    finally:
        sys.stderr.flush()
    payload, ok = protocol.encode(response)
    with os.fdopen(response_fd, "wb") as out:
        out.write(payload)
        out.flush()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
