"""API differences between langgraph releases, each guarded explicitly.

Worker code must run on every supported version set, from langgraph 0.2.0 with
checkpoint-postgres 1.0.0 to the newest. Everything that moved or appeared on
the way is looked up here, by feature first and by version only where no
feature can be probed:

* ``Send`` lives in ``langgraph.constants`` in 0.2.0 and in ``langgraph.types``
  later (the old name stayed as an alias for a while, then went away).
* ``interrupt()`` and ``Command(resume=...)`` exist from langgraph 0.2.56/0.2.57
  on; before that a thread can only pause with ``interrupt_before``/``_after``.
* checkpoint-postgres 1.0.0 writes checkpoint metadata (which holds every
  node's output in ``metadata["writes"]``) as plain JSON: a node that returns a
  message or any custom type fails at write time (H-1.0.0-JSON).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from importlib import metadata as _metadata
from typing import Any

from migrator.worker import protocol

#: Distributions whose versions canary ops report (and pass to ``unsupported_reason``).
PACKAGES = (*protocol.KEY_DISTRIBUTIONS, "pydantic")


def installed_versions() -> dict[str, str | None]:
    """Installed version of each package in :data:`PACKAGES` (None when absent)."""
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = _metadata.version(name)
        except _metadata.PackageNotFoundError:
            found[name] = None
    return found


def version_tuple(version: str | None) -> tuple[int, ...]:
    """Leading numeric release parts of ``version`` (``"0.2.62rc1"`` -> ``(0, 2, 62)``).

    Args:
        version: A version string, or None.

    Returns:
        The numeric parts, ``()`` for None or an unparsable string.
    """
    if not version:
        return ()
    match = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(p) for p in match.group(0).split(".")) if match else ()


def graph_api() -> tuple[Any, Any, Any]:
    """``(StateGraph, START, END)`` — the same import in every supported version."""
    from langgraph.graph import END, START, StateGraph

    return StateGraph, START, END


def add_messages_reducer() -> Callable[..., Any]:
    """The ``add_messages`` reducer (``langgraph.graph.message`` in every version)."""
    from langgraph.graph.message import add_messages

    return add_messages


def send_class() -> Any:
    """``Send``: ``langgraph.types`` where it exists, else ``langgraph.constants`` (0.2.0)."""
    try:
        from langgraph.types import Send
    except ImportError:  # langgraph 0.2.0
        from langgraph.constants import Send  # type: ignore[no-redef]
    return Send


def command_class() -> Any | None:
    """``Command`` when it can resume an ``interrupt()``; None on older versions."""
    try:
        from langgraph.types import Command
    except ImportError:
        return None
    fields = getattr(Command, "__dataclass_fields__", None) or {}
    return Command if "resume" in fields else None


def interrupt_function() -> Callable[[Any], Any] | None:
    """``langgraph.types.interrupt`` where the version has it (>= ~0.2.56), else None."""
    try:
        from langgraph.types import interrupt
    except ImportError:
        return None
    return interrupt


def interrupt_fn_unsupported() -> str | None:
    """Why ``interrupt()`` + ``Command(resume=...)`` cannot be used here, or None."""
    if interrupt_function() is None:
        return "langgraph has no interrupt() (added in 0.2.56/0.2.57)"
    if command_class() is None:
        return "langgraph has no Command(resume=...) to answer an interrupt()"
    return None


def resume_command(value: Any) -> Any:
    """``Command(resume=value)``, the input that answers a pending ``interrupt()``.

    Raises:
        RuntimeError: The installed langgraph has no ``Command(resume=...)``.
    """
    command = command_class()
    if command is None:
        raise RuntimeError("this langgraph cannot resume an interrupt() (no Command.resume)")
    return command(resume=value)


def json_only_metadata() -> bool:
    """True where the saver writes raw node outputs as JSON (H-1.0.0-JSON).

    checkpoint-postgres 1.0.0 passes checkpoint metadata, including
    ``metadata["writes"]``, straight to ``Jsonb``; later releases serialize it
    through the serde (``_dump_metadata``) or drop the writes
    (``get_serializable_checkpoint_metadata``).
    """
    import langgraph.checkpoint.postgres as pg
    from langgraph.checkpoint.postgres.base import BasePostgresSaver

    if hasattr(BasePostgresSaver, "_dump_metadata"):
        return False
    return not hasattr(pg, "get_serializable_checkpoint_metadata")


def json_only_reason() -> str | None:
    """The H-1.0.0-JSON reason to skip canaries with messages or custom types, or None."""
    if not json_only_metadata():
        return None
    return (
        "H-1.0.0-JSON: this checkpoint-postgres writes node outputs as plain JSON "
        "(messages and custom types fail at write time)"
    )


def metadata_json_rejects(values: Mapping[str, Any]) -> str | None:
    """Why this saver cannot store ``values`` as a node's output, or None.

    Releases before checkpoint-postgres ~2.0.25 copy node outputs into
    ``metadata["writes"]``. 1.0.0 writes them with plain JSON (nothing custom
    fits); later ones with the serde's JSON encoder, which in early
    langgraph-checkpoint releases (1.0.2) has no ``Decimal`` or ``date``.
    The encoder is probed with ``values`` rather than guessed from versions.

    Args:
        values: A node output the canary will write.
    """
    reason = json_only_reason()
    if reason is not None:
        return reason
    from langgraph.checkpoint.postgres.base import BasePostgresSaver

    if not hasattr(BasePostgresSaver, "_dump_metadata"):
        return None  # writes are no longer kept in JSON metadata
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    dumps = getattr(JsonPlusSerializer(), "dumps", None)
    if dumps is None:
        return None
    try:
        dumps({"writes": {"node": dict(values)}})
    except (TypeError, ValueError) as exc:
        return (
            "H-1.0.0-JSON: this checkpoint-postgres keeps node outputs in JSON metadata "
            f"and its encoder rejects them ({type(exc).__name__}: {exc})"
        )
    return None


def message_classes() -> tuple[Any, Any, Any]:
    """``(HumanMessage, AIMessage, ToolMessage)`` from langchain-core."""
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    return HumanMessage, AIMessage, ToolMessage


def configurable(config: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The ``configurable`` section of a node's config (empty when absent)."""
    if not config:
        return {}
    return config.get("configurable") or {}


def thread_config(thread_id: str, **extra: Any) -> dict[str, Any]:
    """A run config for ``thread_id`` with extra ``configurable`` keys."""
    return {"configurable": {"thread_id": thread_id, **extra}}
