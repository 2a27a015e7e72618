"""Type-tagged canonical JSON for any value a langgraph version hands back.

Runs inside a version environment: imports only the standard library at import
time; pydantic and langchain-core are recognised through lazy imports, so this
module works with langchain-core 0.2 (pydantic v1 models) through the newest.

The convention (documented in ``docs/snapshot-format.md``):

* JSON scalars (``str``, ``int``, ``bool``, ``None``) and finite ``float`` stay;
  ``list`` stays a list; a ``dict`` whose keys are all ``str`` not starting with
  ``"__"`` stays an object. Everything else becomes ``{"__type__": TAG, ...}``.
* A value that cannot be encoded becomes ``{"__error__": "ExcType: message"}``,
  at the narrowest level: its siblings are still encoded.

The point is that a pydantic model and the dict it degrades into (strict msgpack,
H-STRICT-MSGPACK) encode differently, and that fields a newer langchain-core adds
to messages with empty or default values do not.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import decimal
import enum
import json
import math
import operator
import re
import uuid
from collections.abc import Callable
from typing import Any

TYPE_KEY = "__type__"
ERROR_KEY = "__error__"
MAX_DEPTH = 100
"""Containers nested deeper than this become ``__error__`` (keeps every JSON
encoder, ours and the host's, far from Python's recursion limit)."""

_ADDRESS_RE = re.compile(r" at 0x[0-9a-fA-F]+")
_EMPTY: tuple[Any, ...] = (None, "", [], {}, ())
# A str key with one of these (what json escapes, space, "!") does not sort as its JSON.
_UNSORTABLE_KEY_RE = re.compile(r"[\x00-\x22\\]")
# Tool-call dicts carry a constant "type" tag in newer langchain-core only.
_TOOL_CALL_KEYS = {
    "tool_calls": "tool_call",
    "invalid_tool_calls": "invalid_tool_call",
    "tool_call_chunks": "tool_call_chunk",
}


class UnencodableValue(Exception):
    """Raised for values we refuse (cycles, too deep); reported as ``__error__``."""


def error_entry(exc: BaseException) -> dict[str, str]:
    """The ``{"__error__": "ExcType: message"}`` marker for an exception.

    Args:
        exc: The exception raised while reading or encoding a value.

    Returns:
        A one-key dict; memory addresses in the message are masked so the marker
        is deterministic, and a psycopg error keeps only its first line.
    """
    message = _ADDRESS_RE.sub(" at 0x?", str(exc)).strip()
    if type(exc).__module__.startswith("psycopg"):
        # The server's LINE/caret context is noise; the first line says what failed.
        message = message.splitlines()[0] if message else message
    name = type(exc).__name__
    return {ERROR_KEY: f"{name}: {message}" if message else name}


def canonical_dumps(value: Any) -> str:
    """Canonical JSON text: sorted keys, no whitespace, UTF-8, no NaN.

    Args:
        value: An already encoded (JSON-compatible) value.

    Returns:
        The same text for equal values, on every Python and every version env.
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def class_name(obj_or_type: Any) -> str:
    """``module.Qualname`` of a value's class (or of a class)."""
    cls = obj_or_type if isinstance(obj_or_type, type) else type(obj_or_type)
    return f"{cls.__module__}.{cls.__qualname__}"


def encode(value: Any) -> Any:
    """Encode ``value`` as type-tagged, canonical JSON-compatible data.

    Args:
        value: Anything a checkpoint, a pending write or a state can hold.

    Returns:
        JSON-compatible data (dicts, lists, str, int, float, bool, None); never
        raises: a value that fails becomes ``{"__error__": ...}``.
    """
    return _Encoder().encode(value, 0)


class _Encoder:
    """One encoding pass; tracks the containers on the current path (cycles)."""

    def __init__(self) -> None:
        self._active: set[int] = set()

    def encode(self, value: Any, depth: int) -> Any:
        try:
            return self._encode(value, depth)
        except Exception as exc:  # noqa: BLE001 - any failure becomes a marker
            return error_entry(exc)

    def _sorted(self, items: list[Any]) -> list[Any]:
        return sorted(items, key=canonical_dumps)

    def _encode(self, value: Any, depth: int) -> Any:
        vtype = type(value)
        if value is None or vtype is bool or vtype is int or vtype is str:
            return value
        if vtype is float:
            if math.isfinite(value):
                return value
            return {TYPE_KEY: "float", "value": repr(value)}
        if vtype is dict or vtype is list:  # the common containers, without the generic dispatch
            if depth > MAX_DEPTH:
                raise UnencodableValue(f"nested deeper than {MAX_DEPTH} levels")
            key = id(value)
            if key in self._active:
                raise UnencodableValue(f"cyclic reference to a {vtype.__name__}")
            self._active.add(key)
            try:
                if vtype is dict:
                    return self._encode_dict(value, depth + 1)
                return [self.encode(v, depth + 1) for v in value]
            finally:
                self._active.discard(key)
        if isinstance(value, enum.Enum):
            return {
                TYPE_KEY: "enum",
                "class": class_name(value),
                "value": self.encode(value.value, depth + 1),
            }
        if depth > MAX_DEPTH:
            raise UnencodableValue(f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, (dict, list, tuple, set, frozenset)) or hasattr(value, "__dict__"):
            key = id(value)
            if key in self._active:
                raise UnencodableValue(f"cyclic reference to a {vtype.__name__}")
            self._active.add(key)
            try:
                return self._encode_compound(value, depth)
            finally:
                self._active.discard(key)
        return self._encode_compound(value, depth)

    def _encode_compound(self, value: Any, depth: int) -> Any:
        d = depth + 1
        if _is_plain_message_class(type(value)):  # what the checks below would reach
            return self._encode_message(value, d)
        if isinstance(value, dict):
            return self._encode_dict(value, d)
        if isinstance(value, list):
            return [self.encode(v, d) for v in value]
        if isinstance(value, tuple):
            fields = getattr(type(value), "_fields", None)
            if isinstance(fields, tuple):
                return {
                    TYPE_KEY: "namedtuple",
                    "class": class_name(value),
                    "fields": {f: self.encode(v, d) for f, v in zip(fields, value, strict=False)},
                }
            return {TYPE_KEY: "tuple", "items": [self.encode(v, d) for v in value]}
        if isinstance(value, (set, frozenset)):
            tag = "frozenset" if isinstance(value, frozenset) else "set"
            return {TYPE_KEY: tag, "items": self._sorted([self.encode(v, d) for v in value])}
        if isinstance(value, (bytes, bytearray, memoryview)):
            tag = "bytes" if isinstance(value, bytes) else type(value).__name__
            return {TYPE_KEY: tag, "base64": base64.b64encode(bytes(value)).decode("ascii")}
        if isinstance(value, _dt.datetime):
            out: dict[str, Any] = {TYPE_KEY: "datetime", "iso": value.isoformat()}
            if value.tzinfo is not None:
                out["tz"] = str(value.tzinfo)
            return out
        if isinstance(value, _dt.date):
            return {TYPE_KEY: "date", "iso": value.isoformat()}
        if isinstance(value, _dt.time):
            out = {TYPE_KEY: "time", "iso": value.isoformat()}
            if value.tzinfo is not None:
                out["tz"] = str(value.tzinfo)
            return out
        if isinstance(value, _dt.timedelta):
            return {
                TYPE_KEY: "timedelta",
                "days": value.days,
                "seconds": value.seconds,
                "microseconds": value.microseconds,
            }
        if isinstance(value, decimal.Decimal):
            return {TYPE_KEY: "Decimal", "value": str(value)}
        if isinstance(value, uuid.UUID):
            return {TYPE_KEY: "UUID", "value": str(value)}
        if isinstance(value, str):  # str subclass that is not an Enum
            return {TYPE_KEY: "str", "class": class_name(value), "value": str(value)}
        if isinstance(value, (int, float)):  # int/float subclass that is not an Enum
            return {TYPE_KEY: "number", "class": class_name(value), "repr": repr(value)}
        if _is_message(value):
            return self._encode_message(value, d)
        langgraph_type = _langgraph_type(value)
        if langgraph_type == "Send":
            return {
                TYPE_KEY: "Send",
                "node": self.encode(value.node, d),
                "arg": self.encode(value.arg, d),
            }
        if langgraph_type == "Interrupt":
            # Only `value` is stable: `resumable`/`ns`/`when` exist in 0.2.x only,
            # `id` from 0.4 on, and ids derive from task ids (H-TASK-ID).
            return {TYPE_KEY: "Interrupt", "value": self.encode(value.value, d)}
        fields = _model_fields(value)
        if fields is not None:
            return {
                TYPE_KEY: "pydantic",
                "class": class_name(value),
                "fields": {name: self._attr(value, name, d) for name in fields},
            }
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {
                TYPE_KEY: "dataclass",
                "class": class_name(value),
                "fields": {f.name: self._attr(value, f.name, d) for f in dataclasses.fields(value)},
            }
        return {
            TYPE_KEY: "object",
            "class": class_name(value),
            "repr": _ADDRESS_RE.sub(" at 0x?", repr(value)),
        }

    def _attr(self, value: Any, name: str, d: int) -> Any:
        try:
            raw = getattr(value, name, None)
        except Exception as exc:  # noqa: BLE001 - one broken field, not the whole object
            return error_entry(exc)
        return self.encode(raw, d)

    def _encode_dict(self, value: dict[Any, Any], d: int) -> Any:
        for k in value:
            if type(k) is not str or k.startswith("__"):
                return self._encode_tagged_dict(value, d)
        out = {}
        for k, v in value.items():
            vtype = type(v)
            # JSON scalars encode as themselves: skip the call
            plain = v is None or vtype is str or vtype is int or vtype is bool
            out[k] = v if plain else self.encode(v, d)
        return out

    def _encode_tagged_dict(self, value: dict[Any, Any], d: int) -> dict[str, Any]:
        items = []
        by_text = False  # whether the keys sort differently from their canonical JSON
        for k, v in value.items():
            ktype, vtype = type(k), type(v)
            key = k if ktype is str else self.encode(k, d)
            if not by_text and (type(key) is not str or _UNSORTABLE_KEY_RE.search(key)):
                by_text = True
            plain = v is None or vtype is str or vtype is int or vtype is bool
            items.append([key, v if plain else self.encode(v, d)])
        if by_text:
            items.sort(key=lambda kv: canonical_dumps(kv[0]))
        else:
            # Distinct str keys that json leaves unescaped, all of whose characters
            # sort after '"': ordered as they are, they are ordered as their JSON is.
            items.sort(key=operator.itemgetter(0))
        return {TYPE_KEY: "dict", "items": items}

    def _encode_message(self, value: Any, d: int) -> dict[str, Any]:
        fields = _model_fields(value) or {}
        out: dict[str, Any] = {}
        for name, default in fields.items():
            raw = getattr(value, name, None)
            if name != "content" and _is_empty_or_default(raw, default):
                continue
            if name in _TOOL_CALL_KEYS and isinstance(raw, list):
                raw = [_normalize_tool_call(c, _TOOL_CALL_KEYS[name]) for c in raw]
            rtype = type(raw)
            plain = raw is None or rtype is str or rtype is int or rtype is bool
            out[name] = raw if plain else self.encode(raw, d)
        return {TYPE_KEY: "message", "class": type(value).__name__, "fields": out}


def _is_empty_or_default(raw: Any, default: Any) -> bool:
    # An exact None/str/list/dict/tuple equals the _EMPTY member of its type iff it is
    # empty (builtin __eq__, cannot raise); any other type never matches _EMPTY.
    rtype = type(raw)
    if raw is None or (
        (rtype is str or rtype is list or rtype is dict or rtype is tuple) and not raw
    ):
        return True
    if default is _NO_DEFAULT or rtype is not type(default):
        return False
    try:
        return bool(raw == default)
    except Exception:  # noqa: BLE001 - odd __eq__: keep the field
        return False


def _normalize_tool_call(call: Any, constant_type: str) -> Any:
    if not isinstance(call, dict):
        return call
    return {
        k: v for k, v in call.items() if not (k == "type" and v == constant_type) and v is not None
    }


class _NoDefault:
    def __repr__(self) -> str:
        return "<no default>"


_NO_DEFAULT: Any = _NoDefault()


def _model_fields(value: Any) -> dict[str, Any] | None:
    """Field name -> default for a pydantic v2 or v1 model instance, else None.

    The defaults are computed once per class (and again should the class's field
    table be replaced); callers must not mutate the returned dict.
    """
    cls = type(value)
    if not _has_pydantic_base(cls):
        return None
    v2 = getattr(cls, "model_fields", None)
    if isinstance(v2, dict) and hasattr(value, "model_dump"):
        return _defaults_of(cls, v2, _v2_defaults)
    v1 = getattr(cls, "__fields__", None)
    if isinstance(v1, dict):
        return _defaults_of(cls, v1, _v1_defaults)
    return None


#: class -> (the field table the defaults were computed from, the defaults)
_DEFAULTS: dict[type, tuple[Any, dict[str, Any]]] = {}


def _defaults_of(
    cls: type, table: dict[str, Any], compute: Callable[[dict[str, Any]], dict[str, Any]]
) -> dict[str, Any]:
    cached = _DEFAULTS.get(cls)
    if cached is not None and cached[0] is table:
        return cached[1]
    defaults = compute(table)
    _DEFAULTS[cls] = (table, defaults)
    return defaults


def _v2_defaults(table: dict[str, Any]) -> dict[str, Any]:
    return {name: _v2_default(info) for name, info in table.items()}


def _v1_defaults(table: dict[str, Any]) -> dict[str, Any]:
    return {
        name: _NO_DEFAULT if getattr(info, "required", False) else getattr(info, "default", None)
        for name, info in table.items()
    }


def _v2_default(info: Any) -> Any:
    try:
        if info.is_required() or info.default_factory is not None:
            return _NO_DEFAULT
        return info.get_default()
    except Exception:  # noqa: BLE001 - unknown pydantic shape: no default
        return _NO_DEFAULT


#: Facts that depend only on a class, computed once per class.
_PYDANTIC_CLASSES: dict[type, bool] = {}
_MESSAGE_CLASSES: dict[type, bool] = {}
_PLAIN_MESSAGE_CLASSES: dict[type, bool] = {}
_LANGGRAPH_TYPES: dict[type, str | None] = {}
#: What ``_Encoder._encode`` and ``_encode_compound`` test before they test for a message.
_CHECKED_BEFORE_MESSAGE = (
    enum.Enum,
    dict,
    list,
    tuple,
    set,
    frozenset,
    bytes,
    bytearray,
    memoryview,
    _dt.date,
    _dt.time,
    _dt.timedelta,
    decimal.Decimal,
    uuid.UUID,
    str,
    int,
    float,
)


def _per_class(cache: dict[type, Any], cls: type, compute: Callable[[type], Any]) -> Any:
    try:
        return cache[cls]
    except KeyError:
        found = cache[cls] = compute(cls)
        return found
    except TypeError:  # an unhashable class (a metaclass with __eq__ only)
        return compute(cls)


def _has_pydantic_base(cls: type) -> bool:
    return bool(_per_class(_PYDANTIC_CLASSES, cls, _find_pydantic_base))


def _find_pydantic_base(cls: type) -> bool:
    return any(c.__module__.startswith("pydantic") for c in cls.__mro__[1:])


def _is_message(value: Any) -> bool:
    return bool(_per_class(_MESSAGE_CLASSES, type(value), _find_message_base))


def _find_message_base(cls: type) -> bool:
    return any(
        c.__name__ == "BaseMessage" and c.__module__.startswith("langchain_core")
        for c in cls.__mro__
    )


def _is_plain_message_class(cls: type) -> bool:
    """A message class that no type check made before the message one matches."""
    return bool(_per_class(_PLAIN_MESSAGE_CLASSES, cls, _find_plain_message))


def _find_plain_message(cls: type) -> bool:
    return _find_message_base(cls) and not issubclass(cls, _CHECKED_BEFORE_MESSAGE)


def _langgraph_type(value: Any) -> str | None:
    found: str | None = _per_class(_LANGGRAPH_TYPES, type(value), _find_langgraph_type)
    return found


def _find_langgraph_type(cls: type) -> str | None:
    if cls.__module__.startswith("langgraph") and cls.__name__ in ("Send", "Interrupt"):
        return cls.__name__
    return None
