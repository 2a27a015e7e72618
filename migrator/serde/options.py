"""``--strict-msgpack`` and ``--allow-module`` for the commands that read with the new version."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from migrator.serde.strict import mode_from_flags, use_strict

F = TypeVar("F", bound=Callable[..., Any])


def strict_options(fn: F) -> F:
    """Add ``--strict-msgpack`` / ``--allow-module``; the command runs with the mode active."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        mode = mode_from_flags(kwargs.pop("strict_msgpack"), kwargs.pop("allow_modules"))
        with use_strict(mode):
            return fn(*args, **kwargs)

    out: Any = click.option(
        "--allow-module",
        "allow_modules",
        multiple=True,
        metavar="MODULE.CLASS",
        help="Allow this class under strict msgpack (repeatable; implies --strict-msgpack). "
        "scan-types prints the list your data needs.",
    )(wrapper)
    out = click.option(
        "--strict-msgpack",
        is_flag=True,
        help="Read with the new version under LANGGRAPH_STRICT_MSGPACK=true and report "
        "per thread which stored types degrade (H-STRICT-MSGPACK).",
    )(out)
    return out  # type: ignore[no-any-return]
