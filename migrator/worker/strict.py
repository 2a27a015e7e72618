"""Strict-msgpack rehearsal inside a worker (H-STRICT-MSGPACK).

The host runs the new version's reads with ``LANGGRAPH_STRICT_MSGPACK=true``
(langgraph reads it when its serializer module is imported) and, for
``--allow-module``, passes the allowlist as JSON in :data:`ENV_VAR`;
:func:`apply` merges it into the saver's serializer (the inner one of an
``EncryptedSerializer``) where the version has ``with_msgpack_allowlist``.

:class:`EventCounter` counts langgraph's serde events (``msgpack_blocked``,
``msgpack_unregistered_allowed``, ...) per thread where the version emits them
(``langgraph.checkpoint.serde.event_hooks``, langgraph-checkpoint 4.x).

Stdlib only; runs in every version environment (older versions have neither
strict mode nor events: :func:`supported` says so, nothing is applied).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

#: JSON ``{"allow": [[module, name], ...]}`` from the host.
ENV_VAR = "LANGGRAPH_MIGRATOR_WORKER_STRICT"
STRICT_FLAG = "LANGGRAPH_STRICT_MSGPACK"


def settings() -> dict[str, Any] | None:
    """The host's strict settings for this process, or None (not rehearsing)."""
    text = os.environ.get(ENV_VAR)
    if not text:
        return None
    data = json.loads(text)
    return data if isinstance(data, dict) else None


def allowlist() -> list[tuple[str, str]]:
    """The ``(module, name)`` pairs the host allows on top of langgraph's safe types."""
    data = settings() or {}
    return [(str(m), str(n)) for m, n in data.get("allow") or ()]


def supported() -> bool:
    """Whether this version's serializer has a strict mode at all."""
    try:
        from langgraph.checkpoint.serde import jsonplus
    except ImportError:
        return False
    return hasattr(jsonplus.JsonPlusSerializer, "with_msgpack_allowlist")


def apply(serde: Any) -> Any:
    """``serde`` with the host's allowlist merged in (unchanged when not rehearsing)."""
    pairs = allowlist()
    if not pairs:
        return serde
    holder = serde if hasattr(serde, "cipher") and hasattr(serde, "serde") else None
    target = holder.serde if holder is not None else serde
    merge = getattr(target, "with_msgpack_allowlist", None)
    if merge is None:
        return serde
    merged = merge(pairs)
    if holder is not None:
        holder.serde = merged
        return holder
    return merged


class EventCounter:
    """langgraph's serde events, counted per thread (``kind`` and ``module.name``)."""

    def __init__(self) -> None:
        self.current: str | None = None
        self.counts: dict[str, dict[str, int]] = {}
        self._unregister: Callable[[], None] | None = None

    def install(self) -> bool:
        """Listen for events where the version emits them; whether it does."""
        try:
            from langgraph.checkpoint.serde.event_hooks import register_serde_event_listener
        except ImportError:
            return False
        self._unregister = register_serde_event_listener(self._on_event)
        return True

    def _on_event(self, event: Any) -> None:
        thread = self.current or ""
        key = f"{event.get('kind')}:{event.get('module')}.{event.get('name')}"
        per = self.counts.setdefault(thread, {})
        per[key] = per.get(key, 0) + 1

    def close(self) -> None:
        """Stop listening."""
        if self._unregister is not None:
            self._unregister()
            self._unregister = None
