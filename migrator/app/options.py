"""The app-profile flags every command that reads threads takes (click only here)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from migrator.app.profile import FLAG_KEYS, load_profile, use_profile

F = TypeVar("F", bound=Callable[..., Any])

_FLAGS = tuple(FLAG_KEYS)  # click parameter names of the flags added below


def app_options(fn: F) -> F:
    """Add ``--app-path``, ``--graph``, ``--serde``, ``--thread-graph``, ``--key-env``.

    The command body runs with the resulting profile active
    (:func:`migrator.app.profile.use_profile`): every worker it starts, in every
    version environment, loads the app's code, graphs and serializer.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in _FLAGS}
        profile = load_profile(
            paths=values["app_paths"],
            graphs=values["app_graphs"],
            serde=values["app_serde"],
            thread_graph=values["app_thread_graph"],
            key_env=values["app_key_env"],
        )
        profile.check_key_env()
        with use_profile(None if profile.empty else profile):
            return fn(*args, **kwargs)

    decorators = [
        click.option(
            "--key-env",
            "app_key_env",
            default=None,
            metavar="VAR",
            help="The environment variable your encrypting serde reads its key from "
            "(e.g. LANGGRAPH_AES_KEY); checked before anything runs.",
        ),
        click.option(
            "--thread-graph",
            "app_thread_graph",
            default=None,
            metavar="MODULE:FUNCTION",
            help="Your f(thread_id, metadata) -> graph name, when node names do not tell.",
        ),
        click.option(
            "--serde",
            "app_serde",
            default=None,
            metavar="MODULE:FACTORY",
            help="Your serializer factory (e.g. an EncryptedSerializer).",
        ),
        click.option(
            "--graph",
            "app_graphs",
            multiple=True,
            metavar="NAME=MODULE:ATTR",
            help="One of your graphs (repeatable; a compiled graph, a StateGraph or "
            "a function taking a checkpointer). Default: [tool.langgraph-migrator.app].",
        ),
        click.option(
            "--app-path",
            "app_paths",
            multiple=True,
            type=click.Path(path_type=Path, file_okay=False),
            metavar="DIR",
            help="An import root of your app (repeatable; default: the app table's paths).",
        ),
    ]
    out: Any = wrapper
    for decorate in decorators:
        out = decorate(out)
    return out  # type: ignore[no-any-return]
