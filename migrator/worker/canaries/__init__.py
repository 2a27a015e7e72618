"""Built-in canaries and the registry for user canaries.

A canary is a deterministic graph (pure Python, no LLM) that leaves one thread
in a known shape, and whose nodes record each execution in
:mod:`migrator.worker.trace`. Any object with this interface is a canary:

* ``name: str`` and ``thread_id: str`` (built-ins use ``canary:<name>``);
* ``unsupported_reason(info) -> str | None`` where ``info`` maps package names
  to installed versions (optional; missing means always supported);
* ``build(checkpointer)`` -> a compiled graph;
* ``seed(graph, config) -> None``: drive the graph to its known shape;
* ``resume(graph, config) -> None`` and ``resumable: bool``: continue the
  thread the way an app would (optional; missing ``resume`` means not resumable).

Users name a list of such objects with ``--canaries module:attr``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from typing import Any


class CanaryConfigError(Exception):
    """A request names canaries that do not exist or cannot be loaded.

    The worker cannot import :mod:`migrator.errors` (only ``migrator.worker`` is
    staged into version environments); the host sees this class name as the
    ``kind`` of its ``WorkerError`` and treats it as a configuration error.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{message} Hint: {hint}" if hint else message)


class Canary:
    """Base class for canaries: defaults for the optional parts of the interface.

    Attributes:
        name: Unique canary name.
        resumable: Whether :meth:`resume` continues the seeded thread.
        expected_seed_trace: Nodes ``seed`` executes, in trace order.
        expected_resume_trace: Nodes a healthy ``resume`` executes, in trace order.
    """

    name: str = ""
    resumable: bool = False
    expected_seed_trace: tuple[str, ...] = ()
    expected_resume_trace: tuple[str, ...] = ()

    @property
    def thread_id(self) -> str:
        """Deterministic thread id: ``canary:<name>``."""
        return f"canary:{self.name}"

    def unsupported_reason(self, info: Mapping[str, str | None]) -> str | None:
        """Why this canary cannot run with the installed versions, or None.

        Args:
            info: Installed versions by package name.
        """
        return None

    def build(self, checkpointer: Any) -> Any:
        """Compile the canary's graph with ``checkpointer``."""
        raise NotImplementedError

    def seed(self, graph: Any, config: dict[str, Any]) -> None:
        """Drive ``graph`` on the thread in ``config`` to the canary's known shape."""
        raise NotImplementedError

    def resume(self, graph: Any, config: dict[str, Any]) -> None:
        """Continue the seeded thread the way an app would."""
        raise NotImplementedError(f"canary {self.name!r} is not resumable")

    def __repr__(self) -> str:
        return f"<canary {self.name}>"


def is_resumable(canary: Any) -> bool:
    """Whether ``canary`` can be resumed (``resumable`` attribute, else has ``resume``)."""
    flag = getattr(canary, "resumable", None)
    return bool(flag) if flag is not None else callable(getattr(canary, "resume", None))


def thread_id_of(canary: Any) -> str:
    """The canary's thread id (``canary:<name>`` when it does not say)."""
    return str(getattr(canary, "thread_id", None) or f"canary:{canary.name}")


def unsupported_reason_of(canary: Any, info: Mapping[str, str | None]) -> str | None:
    """Call the canary's optional ``unsupported_reason``."""
    method = getattr(canary, "unsupported_reason", None)
    return method(info) if callable(method) else None


def _builtin() -> list[Any]:
    from migrator.worker.canaries import flow, rich, structure

    return [
        flow.MessagesCanary(),
        flow.InterruptBeforeCanary(),
        flow.InterruptFnCanary(),
        flow.SendCanary(),
        flow.SendPausedCanary(),
        structure.SubgraphCanary(),
        rich.RichValuesCanary(),
        structure.TimeTravelCanary(),
        structure.FailedNodeCanary(),
        structure.LargeStateCanary(),
    ]


BUILTIN: list[Any] = _builtin()


def _opt_in() -> list[Any]:
    from migrator.worker.canaries import delta

    return [delta.DeltaMessagesCanary()]


#: Built-in canaries that run only when named (``--canary delta_messages``): they
#: exercise beta APIs of the newest versions (``DeltaChannel``, H-DELTA-*).
OPT_IN: list[Any] = _opt_in()


def get(name: str) -> Any:
    """The built-in canary called ``name``.

    Raises:
        CanaryConfigError: No built-in canary has that name.
    """
    for canary in (*BUILTIN, *OPT_IN):
        if canary.name == name:
            return canary
    known = ", ".join(c.name for c in (*BUILTIN, *OPT_IN))
    raise CanaryConfigError(f"Unknown canary {name!r}.", hint=f"Built-in canaries: {known}.")


def load_user_canaries(spec: str) -> list[Any]:
    """Import the list of canary objects named by ``module:attr``.

    Args:
        spec: ``package.module:attribute``; the attribute is a list (or other
            iterable) of canary objects.

    Returns:
        The canaries, checked for ``name``, ``build`` and ``seed``.

    Raises:
        CanaryConfigError: The spec is malformed, the module or attribute cannot be
            imported, or an entry is not a canary.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CanaryConfigError(
            f"User canaries {spec!r} are not of the form module:attr.",
            hint="Name a list of canary objects, e.g. myapp.canaries:CANARIES.",
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - ImportError, or the module's own code failing
        raise CanaryConfigError(
            f"Cannot import user canary module {module_name!r}: {type(exc).__name__}: {exc}.",
            hint="Install the app's package into the version environment or fix the name.",
        ) from exc
    try:
        value = getattr(module, attr)
    except AttributeError as exc:
        raise CanaryConfigError(
            f"User canary module {module_name!r} has no attribute {attr!r}.",
            hint="Name a module-level list of canary objects.",
        ) from exc
    items = list(value) if isinstance(value, Iterable) else [value]
    for item in items:
        missing = [a for a in ("name", "build", "seed") if not hasattr(item, a)]
        if missing:
            raise CanaryConfigError(
                f"{spec}: {item!r} is not a canary (missing {', '.join(missing)}).",
                hint="A canary has name, build(checkpointer) and seed(graph, config).",
            )
    return items


def select_canaries(names: list[str] | None, user_spec: str | None) -> list[Any]:
    """The canaries a request names: built-ins plus user canaries.

    Args:
        names: Canary names to run; None means every built-in (but the opt-in
            ones, :data:`OPT_IN`) and user canary.
        user_spec: ``module:attr`` of user canaries, or None.

    Returns:
        Canaries in request order (or registry order when ``names`` is None).

    Raises:
        CanaryConfigError: Unknown name, duplicate name, or unloadable user canaries.
    """
    user = load_user_canaries(user_spec) if user_spec else []
    pool = [*BUILTIN, *user]
    by_name: dict[str, Any] = {}
    for canary in (*pool, *OPT_IN):
        if canary.name in by_name and canary is not by_name[canary.name]:
            raise CanaryConfigError(f"Two canaries are called {canary.name!r}.")
        by_name[canary.name] = canary
    if names is None:
        return pool
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise CanaryConfigError(
            f"Unknown canary {', '.join(map(repr, unknown))}.",
            hint=f"Known canaries: {', '.join(by_name)}.",
        )
    return [by_name[n] for n in names]
