"""Strict-msgpack rehearsal (H-STRICT-MSGPACK): the new version's reads under strict mode.

``upgrade-check`` and ``verify`` take ``--strict-msgpack`` and ``--allow-module
MODULE.CLASS`` (repeatable; an allowlist implies strict mode). The command runs
with the mode active (:func:`use_strict`); the new version's workers get
``LANGGRAPH_STRICT_MSGPACK=true`` and the allowlist (:func:`worker_env`), which
:mod:`migrator.worker.strict` merges into the saver's serializer. An app whose
profile names its own serializer rehearses with that one (its own allowlist).

Under strict mode langgraph raises nothing for an unregistered type: a pydantic
model or dataclass comes back as a dict, an Enum as its value. The drift
comparison already calls that breaking ``H-STRICT-MSGPACK``;
:func:`annotate_checks` names the degraded types per thread, adds the serde
events the version counted per thread (langgraph-checkpoint 4.x emits them) and
one ``strict-msgpack`` check with the verdict.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from migrator.errors import ConfigError
from migrator.report import Check, Status

HAZARD = "H-STRICT-MSGPACK"
STRICT_FLAG = "LANGGRAPH_STRICT_MSGPACK"
#: Mirrors :data:`migrator.worker.strict.ENV_VAR`.
WORKER_ENV_VAR = "LANGGRAPH_MIGRATOR_WORKER_STRICT"
_CLASS = re.compile(r"^([A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*)[.:]([A-Za-z_]\w*)$")


@dataclasses.dataclass(frozen=True)
class StrictMode:
    """How the new version's reads are rehearsed.

    Attributes:
        allow: ``(module, class)`` pairs allowed on top of langgraph's safe types.
    """

    allow: tuple[tuple[str, str], ...] = ()

    def worker_env(self) -> dict[str, str]:
        """The variables a worker of the version under test gets."""
        return {
            STRICT_FLAG: "true",
            WORKER_ENV_VAR: json.dumps({"allow": [list(p) for p in self.allow]}),
        }

    def describe(self) -> str:
        """One line: strict, and the allowlist."""
        if not self.allow:
            return "strict msgpack, no allowlist beyond langgraph's safe types"
        return "strict msgpack, allowing " + ", ".join(f"{m}.{n}" for m, n in self.allow)


def parse_allow(values: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """``--allow-module`` values (``pkg.mod.Class`` or ``pkg.mod:Class``) as pairs.

    Raises:
        ConfigError: a value that names no class in a module (exit 2).
    """
    pairs: list[tuple[str, str]] = []
    for value in values:
        match = _CLASS.match(value.strip())
        if not match:
            raise ConfigError(
                f"--allow-module {value!r} does not name a class in a module.",
                hint="langgraph's allowlist holds exact classes: --allow-module shop.models.Order",
            )
        pair = (match[1], match[2])
        if pair not in pairs:
            pairs.append(pair)
    return tuple(pairs)


def mode_from_flags(strict: bool, allow: Sequence[str]) -> StrictMode | None:
    """The mode ``--strict-msgpack`` / ``--allow-module`` ask for, or None."""
    pairs = parse_allow(allow)
    return StrictMode(pairs) if strict or pairs else None


_ACTIVE: list[StrictMode] = []
_LOCK = threading.Lock()


@contextmanager
def use_strict(mode: StrictMode | None) -> Iterator[None]:
    """Make ``mode`` the rehearsal of the command running now (process-wide)."""
    if mode is None:
        yield
        return
    with _LOCK:
        _ACTIVE.append(mode)
    try:
        yield
    finally:
        with _LOCK:
            _ACTIVE.remove(mode)


def active_mode() -> StrictMode | None:
    """The rehearsal of the command running now, or None."""
    with _LOCK:
        return _ACTIVE[-1] if _ACTIVE else None


def worker_env() -> dict[str, str]:
    """The active mode's worker variables (empty when not rehearsing)."""
    mode = active_mode()
    return mode.worker_env() if mode is not None else {}


Call = Callable[[Any, str, dict[str, Any]], dict[str, Any]]


def for_env(call: Call, target: Any, run: Callable[..., dict[str, Any]]) -> Call:
    """``call``, except that ops in ``target`` (the new version) run strict when rehearsing.

    Args:
        call: ``call(env, op, request)`` as the command uses it.
        target: The version environment under test.
        run: ``run(env, op, request, extra_env)`` for the strict calls.
    """
    env_vars = worker_env()
    if not env_vars:
        return call

    def strict_call(env: Any, op: str, request: dict[str, Any]) -> dict[str, Any]:
        if env is target:
            return run(env, op, request, env_vars)
        return call(env, op, request)

    return strict_call


# ------------------------------------------------------------------ reporting


def degraded_types(differences: Iterable[Mapping[str, Any]]) -> list[str]:
    """The classes strict mode degraded, named by the differences' old values."""
    found: set[str] = set()
    for diff in differences:
        if diff.get("hazard") != HAZARD:
            continue
        old = diff.get("old")
        if isinstance(old, Mapping):
            name = old.get("class") or old.get("__type__")
            if isinstance(name, str):
                found.add(name)
        else:
            found.add(str(diff.get("old_type") or "?"))
    return sorted(found)


def annotate_checks(
    checks: Sequence[Check], snapshot: Mapping[str, Any], version: str = ""
) -> list[Check]:
    """Name the degraded types per thread, add the serde events, and one verdict.

    Args:
        checks: The command's checks (drift / verify ones carry the differences).
        snapshot: The new version's snapshot (its ``strict`` and ``serde_events``).
        version: The version label, for the verdict.

    Returns:
        The checks, annotated, plus one ``strict-msgpack`` check when rehearsing.
    """
    mode = active_mode()
    events: Mapping[str, Mapping[str, int]] = snapshot.get("serde_events") or {}
    by_canary = {
        str(entry.get("canary")): tid
        for tid, entry in (snapshot.get("threads") or {}).items()
        if isinstance(entry, Mapping) and entry.get("canary")
    }
    out: list[Check] = []
    degraded: dict[str, list[str]] = {}
    for check in checks:
        types = degraded_types(check.differences)
        thread = check.thread_id or by_canary.get(check.canary or "")
        details = dict(check.details)
        if thread and thread in events:
            details["serde_events"] = dict(events[thread])
        if types:
            degraded[check.canary or thread or check.check] = types
            details["strict_degraded"] = types
            check = dataclasses.replace(
                check,
                summary=f"strict msgpack degrades {', '.join(types)} ({HAZARD}); " + check.summary,
            )
        out.append(dataclasses.replace(check, details=details))
    if mode is None:
        return out
    info = snapshot.get("strict") or {}
    where = f" under {version}" if version else ""
    if info and not info.get("supported", True):
        out.append(
            Check(
                "strict-msgpack",
                "skip",
                f"{mode.describe()}{where}: this version has no strict mode",
            )
        )
        return out
    blocked = sorted({k.partition(":")[2] for e in events.values() for k in e if "blocked" in k})
    verdict: dict[str, Any] = {
        "allow": [f"{m}.{n}" for m, n in mode.allow],
        "degraded": degraded,
        "blocked": blocked,
        "events_counted": bool(info.get("events_supported")),
    }
    if degraded:
        names = sorted({t for ts in degraded.values() for t in ts})
        summary = (
            f"{mode.describe()}{where}: {len(degraded)} thread(s) degrade "
            f"({', '.join(names)}); allow them (scan-types prints the setting) "
            "before turning strict mode on"
        )
        status: Status = "fail"
    else:
        summary = f"{mode.describe()}{where}: every stored type still loads"
        status = "pass"
    hazards = (HAZARD,) if degraded else ()
    out.append(Check("strict-msgpack", status, summary, hazards=hazards, details=verdict))
    return out
