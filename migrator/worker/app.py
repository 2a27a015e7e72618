"""The application profile inside a worker: the app's code, graphs and serializer.

The host (:mod:`migrator.app.profile`) passes the profile as JSON in the
``LANGGRAPH_MIGRATOR_WORKER_APP`` environment variable of every worker it starts; this
module applies it once per process: the app's import roots go first on
``sys.path`` (so its state types rebuild, H-UNDECODABLE-NULL), its serializer
factory builds every saver's ``serde``, and its graphs are compiled over the
worker's saver on demand. Nothing here runs a node of the app: graphs are only
compiled, and read through ``get_state``; a resume is an explicit op.

Stdlib only (plus what the app imports); runs in every version environment.
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ENV_VAR = "LANGGRAPH_MIGRATOR_WORKER_APP"


class AppConfigError(Exception):
    """The app profile names code that does not load in this environment.

    The host sees the class name as the ``kind`` of its ``WorkerError`` and
    reports a configuration error (exit 2), naming the environment.
    """


class UnknownThreadGraph(AppConfigError):
    """No graph of the profile can be told to be a thread's (that thread is reported)."""


@dataclass
class WorkerApp:
    """The profile as the worker received it (see ``docs/app-profile.md``)."""

    paths: list[str] = field(default_factory=list)
    graphs: dict[str, str] = field(default_factory=dict)
    serde: str | None = None
    thread_graph: str | None = None
    _loaded: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, text: str) -> WorkerApp:
        """Parse the host's JSON.

        Raises:
            AppConfigError: not the JSON the host writes.
        """
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not an object")
            return cls(
                paths=[str(p) for p in data.get("paths") or ()],
                graphs={str(k): str(v) for k, v in (data.get("graphs") or {}).items()},
                serde=data.get("serde") or None,
                thread_graph=data.get("thread_graph") or None,
            )
        except (ValueError, TypeError, AttributeError) as exc:
            raise AppConfigError(f"{ENV_VAR} is not a valid app profile: {exc}") from exc

    def check(self) -> None:
        """Import every ``module:attr`` the profile names, so a typo fails the op at once
        (naming the key) instead of silently disabling what needs it later.

        Raises:
            AppConfigError: a module does not import or lacks the attribute.
        """
        for name, spec in sorted(self.graphs.items()):
            self.obj(spec, f"graph {name}")
        if self.serde:
            self.obj(self.serde, "serde")
        if self.thread_graph:
            self.obj(self.thread_graph, "thread_graph")

    def apply_paths(self) -> None:
        """Put the app's import roots first on ``sys.path`` (once each)."""
        for path in reversed(self.paths):
            if path not in sys.path:
                sys.path.insert(0, path)

    def obj(self, spec: str, what: str) -> Any:
        """The object ``module:attr`` names (``attr`` may be dotted), imported once.

        Raises:
            AppConfigError: the module fails to import or has no such attribute.
        """
        if spec in self._loaded:
            return self._loaded[spec]
        module_name, sep, attr = spec.partition(":")
        if not sep or not module_name or not attr:
            raise AppConfigError(f"the app's {what} {spec!r} is not module:attr")
        try:
            value: Any = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - the app's module raised at import
            raise AppConfigError(
                f"the app's {what} module {module_name} does not import: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        try:
            for part in attr.split("."):
                value = getattr(value, part)
        except AttributeError:
            raise AppConfigError(
                f"the app's {what} {spec!r}: module {module_name} has no attribute {attr}"
            ) from None
        self._loaded[spec] = value
        return value

    def make_serde(self) -> Any | None:
        """The app's serializer (its factory called once per saver), or None."""
        if not self.serde:
            return None
        factory = self.obj(self.serde, "serde")
        try:
            return (
                factory() if callable(factory) and not hasattr(factory, "loads_typed") else factory
            )
        except Exception as exc:  # noqa: BLE001 - e.g. a missing key variable
            raise AppConfigError(
                f"the app's serde factory {self.serde} failed: {type(exc).__name__}: {exc}"
            ) from exc

    def graph(self, name: str, checkpointer: Any) -> Any:
        """The app's graph ``name`` compiled over ``checkpointer``.

        A profile entry may name a compiled graph, a ``StateGraph`` (compiled
        here) or a function taking the checkpointer.

        Raises:
            AppConfigError: unknown name, or the entry does not give a graph.
        """
        if name not in self.graphs:
            known = ", ".join(sorted(self.graphs)) or "none"
            raise AppConfigError(f"the app has no graph {name!r} (its graphs: {known})")
        target = self.obj(self.graphs[name], f"graph {name}")
        return compile_over(target, checkpointer, f"graph {name} ({self.graphs[name]})")

    def node_names(self, name: str) -> set[str]:
        """The node names of graph ``name`` (compiled without a checkpointer)."""
        key = f"nodes:{name}"
        if key not in self._loaded:
            graph = self.graph(name, None)
            nodes = getattr(graph, "nodes", None) or getattr(
                getattr(graph, "builder", None), "nodes", {}
            )
            self._loaded[key] = {str(n) for n in nodes if not str(n).startswith("__")}
        return set(self._loaded[key])

    def graph_for(self, thread_id: str, metadata: Mapping[str, Any] | None) -> str | None:
        """``thread_graph(thread_id, metadata)`` when the profile has one, else None."""
        if not self.thread_graph:
            return None
        fn = self.obj(self.thread_graph, "thread_graph")
        try:
            found = fn(thread_id, dict(metadata or {}))
        except Exception as exc:  # noqa: BLE001
            raise AppConfigError(
                f"the app's thread_graph {self.thread_graph} failed for thread {thread_id}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return None if found is None else str(found)


def compile_over(target: Any, checkpointer: Any, what: str) -> Any:
    """A compiled graph over ``checkpointer`` from a graph, a builder or a factory."""
    if hasattr(target, "get_state") and hasattr(target, "invoke"):  # compiled already
        return with_checkpointer(target, checkpointer)
    if hasattr(target, "compile") and hasattr(target, "add_node"):  # a StateGraph
        return target.compile(checkpointer=checkpointer)
    if callable(target):
        try:
            graph = target(checkpointer)
        except Exception as exc:  # noqa: BLE001 - the app's factory
            raise AppConfigError(f"{what} failed to build: {type(exc).__name__}: {exc}") from exc
        if hasattr(graph, "compile") and hasattr(graph, "add_node"):
            return graph.compile(checkpointer=checkpointer)
        if hasattr(graph, "get_state"):
            return graph
    raise AppConfigError(
        f"{what} is not a compiled graph, a StateGraph or a function taking a checkpointer"
    )


def with_checkpointer(graph: Any, checkpointer: Any) -> Any:
    """A compiled graph's copy over ``checkpointer`` (every langgraph version)."""
    if hasattr(graph, "copy"):
        try:
            return graph.copy(update={"checkpointer": checkpointer})
        except TypeError:
            pass
    clone = copy.copy(graph)
    clone.checkpointer = checkpointer
    return clone


def recorded_nodes(checkpoint: Mapping[str, Any], metadata: Mapping[str, Any] | None) -> set[str]:
    """Node names a root checkpoint records: ``versions_seen`` and ``metadata.writes`` keys."""
    seen = set((checkpoint.get("versions_seen") or {}).keys())
    writes = (metadata or {}).get("writes")
    if isinstance(writes, Mapping):
        seen |= set(writes.keys())
    return {str(n) for n in seen if not str(n).startswith("__")}


def choose_graph(
    app: WorkerApp, thread_id: str, nodes: set[str], metadata: Mapping[str, Any] | None
) -> str:
    """The app graph a thread belongs to.

    The one graph whose nodes include every node the thread recorded; when none
    or several do, the profile's ``thread_graph``; else an error naming the
    candidates.

    Raises:
        AppConfigError: no single graph matches and no ``thread_graph`` decides.
    """
    candidates = sorted(n for n in app.graphs if nodes <= app.node_names(n))
    if len(candidates) == 1:
        return candidates[0]
    chosen = app.graph_for(thread_id, metadata)
    if chosen is not None:
        if chosen not in app.graphs:
            raise AppConfigError(
                f"thread_graph says thread {thread_id} belongs to {chosen!r}, "
                f"which is not one of the app's graphs ({', '.join(sorted(app.graphs))})"
            )
        return chosen
    shown = ", ".join(candidates) if candidates else "none of " + ", ".join(sorted(app.graphs))
    raise UnknownThreadGraph(
        f"cannot tell which graph thread {thread_id} belongs to: its nodes "
        f"({', '.join(sorted(nodes)) or 'none'}) match {shown}; "
        "name it with thread_graph in the app profile (--thread-graph MODULE:FUNCTION)"
    )


def graph_of_thread(app: WorkerApp, saver: Any, thread_id: str) -> str:
    """:func:`choose_graph` for a thread, from its latest root checkpoint."""
    tup = saver.get_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}})
    if tup is None:
        raise UnknownThreadGraph(f"thread {thread_id} has no root checkpoint to tell its graph by")
    nodes = recorded_nodes(tup.checkpoint, tup.metadata)
    return choose_graph(app, thread_id, nodes, tup.metadata)


_CURRENT: list[WorkerApp | None] = []


def current() -> WorkerApp | None:
    """This process's app profile (applied on first use), or None without one."""
    if not _CURRENT:
        text = os.environ.get(ENV_VAR)
        app = WorkerApp.from_json(text) if text else None
        if app is not None:
            app.apply_paths()
        _CURRENT.append(app)
        if app is not None:
            app.check()
    return _CURRENT[0]


def make_serde() -> Any | None:
    """The app's serializer for a new saver, or None (the saver's default)."""
    app = current()
    return app.make_serde() if app is not None else None
