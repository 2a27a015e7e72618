"""The dump's value encoding: the snapshot encoding, plus what a restore needs to rebuild.

Runs in the OLD version environment (the dump op), and its helpers in the new
one (the restore reads versions and inline values the same way). Every class a
tag names is collected on the way (:func:`inventory`, or :class:`DumpEncoder`'s
``found`` while encoding): the dump's manifest lists them for the allowlist.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from migrator.worker.encode import (
    TYPE_KEY,
    _Encoder,
    _langgraph_type,
    error_entry,
)

#: Classes every restore may rebuild without an explicit allowlist entry: the new
#: saver's own types, and the tool's canary classes (its own code: a database holding
#: seeded canary threads dumps them too).
BUILTIN_CLASSES = (
    "langgraph.types.Send",
    "langgraph.types.Interrupt",
    # A DeltaChannel's snapshot blob (langgraph >= 1.2): restored as such, so the
    # channel's ancestors replay from it exactly as before (H-DELTA-ROLLBACK).
    "langgraph.checkpoint.serde.types._DeltaSnapshot",
    "migrator.worker.canaries.rich.CanaryColor",
    "migrator.worker.canaries.rich.CanaryModel",
    "migrator.worker.canaries.rich.CanaryRecord",
)
MESSAGE_MODULE = "langchain_core.messages"


class DumpEncoder(_Encoder):
    """The snapshot encoding, keeping every field of an ``Interrupt``.

    The snapshot keeps only ``Interrupt.value`` (the other fields change between
    releases); a restore needs all of them to rebuild the object the way the
    new version's own serializer would.

    While encoding it collects in ``found`` what :func:`inventory` would find in
    its output (so the output need not be walked again).
    """

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.deepest = 0  # the deepest level a non-scalar was encoded at
        self.failures = 0  # values that became an error marker

    def encode_found(self, value: Any) -> tuple[Any, list[str]]:
        """``value`` encoded, and what :func:`inventory` finds in it (unsorted, repeats)."""
        self.found = []
        self.deepest = self.failures = 0
        return self.encode(value, 0), self.found

    def encode(self, value: Any, depth: int) -> Any:
        vtype = type(value)
        if vtype is str or vtype is int or vtype is bool or value is None:
            return value  # the common case, without the generic dispatch
        if depth > self.deepest:
            self.deepest = depth
        found = self.found
        mark = len(found)
        try:
            out = self._encode(value, depth)
        except Exception as exc:  # noqa: BLE001 - any failure becomes a marker
            del found[mark:]  # the marker replaces everything encoded below
            self.failures += 1
            return error_entry(exc)
        if type(out) is dict and (TYPE_KEY in out or "class" in out):
            self._note(out, mark)  # nothing to note for a plain dict
        return out

    def _note(self, out: dict[str, Any], mark: int) -> None:
        """Collect the class ``out``'s tag names (its contents are collected already)."""
        fields = out.get("fields")
        if ("class" in out and TYPE_KEY not in out) or (
            type(fields) is dict and ("class" in fields or TYPE_KEY in fields)
        ):
            # inventory() skips what a "class" key holds and reads a dict with a
            # TYPE_KEY key as a tag: rare keys, so let inventory() itself decide.
            del self.found[mark:]
            names: set[str] = set()
            inventory(out, names)
            self.found.extend(names)
            return
        entry = tag_entry(out)
        if entry is not None:
            self.found.append(entry)

    def _encode_compound(self, value: Any, depth: int) -> Any:
        if _langgraph_type(value) == "Interrupt":
            d = depth + 1
            if dataclasses.is_dataclass(value):
                names = [f.name for f in dataclasses.fields(value)]
            else:
                names = [k for k in vars(value) if not k.startswith("_")]
            return {
                TYPE_KEY: "Interrupt",
                "value": self.encode(value.value, d),
                "fields": {n: self.encode(getattr(value, n, None), d) for n in names},
            }
        return super()._encode_compound(value, depth)


def is_inline(value: Any) -> bool:
    """Values kept inside a checkpoint record (JSON primitives), not as blob records."""
    return value is None or type(value) in (str, int, float, bool)


def version_key(version: Any) -> str:
    """A channel version as a string key (versions are ``str`` or, in old eras, ``int``)."""
    return json.dumps(version)


def dump_encode(value: Any) -> Any:
    """Encode ``value`` for a dump record (never raises; failures become ``__error__``)."""
    return DumpEncoder().encode(value, 0)


#: Encoded values by ``id``: (the value, what :func:`inventory` finds in it).
Known = dict[int, tuple[Any, list[str]]]


def tag_entry(value: dict[str, Any]) -> str | None:
    """The class a tagged dict names for the inventory, else None."""
    tag = value.get(TYPE_KEY)
    if tag == "message":
        return f"{MESSAGE_MODULE}.{value.get('class')}"
    if tag in ("Send", "Interrupt"):
        return f"langgraph.types.{tag}"
    if isinstance(tag, str) and isinstance(value.get("class"), str):
        return str(value["class"])
    return None


def inventory(value: Any, found: set[str], known: Known | None = None) -> None:
    """Add every class named by a tag inside ``value`` to ``found``.

    Args:
        value: Encoded data.
        found: Collects ``module.Qualname`` strings.
        known: Parts of ``value`` whose classes are known already (by ``id``):
            they are not walked.
    """
    if known:
        hit = known.get(id(value))
        if hit is not None and hit[0] is value:
            found.update(hit[1])
            return
    # Only lists and dicts can hold a tag: the checks spare a call per scalar.
    if isinstance(value, list):
        for item in value:
            if isinstance(item, (list, dict)):
                inventory(item, found, known)
        return
    if not isinstance(value, dict):
        return
    if TYPE_KEY in value:
        entry = tag_entry(value)
        if entry is not None:
            found.add(entry)
    for key, item in value.items():
        if isinstance(item, (list, dict)) and key not in (TYPE_KEY, "class"):
            inventory(item, found, known)


def remember(encoded: Any, found: list[str], known: Known) -> None:
    """Note what :func:`inventory` finds in ``encoded`` (a dict or list) by its ``id``."""
    if type(encoded) is dict or type(encoded) is list:  # nothing else holds a tag
        known[id(encoded)] = (encoded, found)
