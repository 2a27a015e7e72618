"""Wire format shared by the worker entry point and its ops (stdlib only).

A request is one JSON object on stdin. The response is exactly one JSON object
on stdout, either ``{"ok": true, "result": {...}}`` or
``{"ok": false, "error": {"type": ..., "message": ..., "traceback": ...}}``.
Everything else a worker prints goes to stderr.
"""

from __future__ import annotations

import json
import traceback
from importlib import metadata
from typing import Any

#: Distributions whose installed versions ops report (``psycopg-binary`` carries libpq).
KEY_DISTRIBUTIONS = (
    "langgraph",
    "langgraph-checkpoint",
    "langgraph-checkpoint-postgres",
    "langchain-core",
    "psycopg",
    "psycopg-binary",
)


class UnknownOpError(Exception):
    """The host asked for an op that this worker does not have."""


def ok_response(result: dict[str, Any]) -> dict[str, Any]:
    """Wrap an op's result.

    Args:
        result: What the op returned.

    Returns:
        The success envelope.
    """
    return {"ok": True, "result": result}


def error_response(exc: BaseException) -> dict[str, Any]:
    """Describe a failure so the host can classify it by exception type.

    Args:
        exc: The exception the op (or the entry point) raised.

    Returns:
        The error envelope, with the exception's class name, message and traceback.
    """
    return {
        "ok": False,
        "error": {
            "type": type(exc).__name__,
            "message": str(exc),
            "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        },
    }


def encode(response: dict[str, Any]) -> tuple[bytes, bool]:
    """Serialize a response as UTF-8 JSON (non-ASCII kept as is).

    A result that is not JSON-serializable becomes an error response instead of a
    half-written stdout.

    Args:
        response: An envelope from :func:`ok_response` or :func:`error_response`.

    Returns:
        The encoded bytes (newline-terminated) and whether they say ``ok``.
    """
    try:
        text = json.dumps(response, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        response = error_response(exc)
        text = json.dumps(response, ensure_ascii=False)
    return (text + "\n").encode("utf-8"), bool(response.get("ok"))


def installed_versions(names: tuple[str, ...] = KEY_DISTRIBUTIONS) -> dict[str, str | None]:
    """Installed versions of distributions, ``None`` for those not installed.

    Args:
        names: Distribution names.

    Returns:
        Mapping of name to version.
    """
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions
