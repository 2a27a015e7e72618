"""Rebuilding values from a dump's type-tagged encoding (``docs/snapshot-format.md``).

Only allow-listed classes are imported, by exact name and never through a module
attribute (:mod:`migrator.worker.classpath`; :class:`DisallowedTypeError` otherwise);
a value that many checkpoints reference is decoded once and shared.
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import uuid
from typing import Any

from migrator.worker import compat
from migrator.worker.classpath import ClassRefusedError, resolve_class
from migrator.worker.dumpencode import BUILTIN_CLASSES, MESSAGE_MODULE, version_key
from migrator.worker.dumpfile import DumpFormatError
from migrator.worker.encode import ERROR_KEY, TYPE_KEY


class DisallowedTypeError(Exception):
    """A value names a class outside the allowlist, or cannot be rebuilt."""


#: JSON primitives: decoded as themselves.
_PLAIN = frozenset({str, int, float, bool, type(None)})


class Decoder:
    """Rebuilds Python values from the type-tagged encoding.

    Args:
        allow_types: ``module.Qualname`` of every class that may be imported
            (messages, ``Send`` and ``Interrupt`` are always allowed).
    """

    def __init__(self, allow_types: list[str] | tuple[str, ...] = ()) -> None:
        self.allowed = set(allow_types) | set(BUILTIN_CLASSES)
        self._classes: dict[str, Any] = {}
        #: Every tag and class rebuilt since the caller last cleared it.
        self.seen: set[str] = set()

    def _cls(self, name: str) -> Any:
        self.seen.add(name)
        if name in self._classes:
            return self._classes[name]
        try:
            cls = resolve_class(name, self.allowed)
        except ClassRefusedError as exc:
            raise DisallowedTypeError(str(exc)) from None
        self._classes[name] = cls
        return cls

    def decode(self, value: Any) -> Any:
        """Rebuild one encoded value.

        Raises:
            DisallowedTypeError: a class outside the allowlist, an ``object``
                (repr only) or an ``__error__`` marker.
        """
        kind = type(value)
        if kind in _PLAIN:  # most values: no call per JSON primitive below either
            return value
        if kind is not list and kind is not dict:
            if not isinstance(value, (list, dict)):
                return value
            kind = list if isinstance(value, list) else dict
        d = self.decode
        if kind is list:
            return [v if type(v) in _PLAIN else d(v) for v in value]
        if len(value) == 1 and ERROR_KEY in value:
            raise DisallowedTypeError(f"the old version could not read it: {value[ERROR_KEY]}")
        tag = value.get(TYPE_KEY)
        if tag is None:
            return {k: v if type(v) in _PLAIN else d(v) for k, v in value.items()}
        return self._tagged(str(tag), value)

    def _tagged(self, tag: str, v: dict[str, Any]) -> Any:  # noqa: C901 - one branch per tag
        d = self.decode
        self.seen.add(tag)
        if tag == "message":  # the most frequent tag first
            cls = self._cls(f"{MESSAGE_MODULE}.{v['class']}")
            return cls(**{k: x if type(x) in _PLAIN else d(x) for k, x in v["fields"].items()})
        if tag == "float":
            return float(v["value"])
        if tag == "dict":  # checkpoints' versions: str keys, str or number values
            return {
                (k if type(k) in _PLAIN else _hashable(d(k))): (x if type(x) in _PLAIN else d(x))
                for k, x in v["items"]
            }
        if tag == "tuple":
            return tuple(d(i) for i in v["items"])
        if tag in ("set", "frozenset"):
            items = [_hashable(d(i)) for i in v["items"]]
            return set(items) if tag == "set" else frozenset(items)
        if tag in ("bytes", "bytearray", "memoryview"):
            raw = base64.b64decode(v["base64"])
            return bytearray(raw) if tag == "bytearray" else raw
        if tag == "datetime":
            return _with_tz(_dt.datetime.fromisoformat(v["iso"]), v.get("tz"))
        if tag == "date":
            return _dt.date.fromisoformat(v["iso"])
        if tag == "time":
            return _with_tz(_dt.time.fromisoformat(v["iso"]), v.get("tz"))
        if tag == "timedelta":
            return _dt.timedelta(
                days=v["days"], seconds=v["seconds"], microseconds=v["microseconds"]
            )
        if tag == "Decimal":
            return decimal.Decimal(v["value"])
        if tag == "UUID":
            return uuid.UUID(v["value"])
        if tag == "enum":
            return self._cls(v["class"])(d(v["value"]))
        if tag == "str":
            return self._cls(v["class"])(v["value"])
        if tag == "number":
            text = str(v["repr"])
            cls = self._cls(v["class"])
            return cls(float(text) if any(c in text for c in ".eEn") else int(text))
        if tag == "namedtuple":
            return self._cls(v["class"])(**{k: d(x) for k, x in v["fields"].items()})
        if tag == "Send":
            return compat.send_class()(d(v["node"]), d(v["arg"]))
        if tag == "Interrupt":
            from langgraph.types import Interrupt

            fields = {k: d(x) for k, x in (v.get("fields") or {"value": v["value"]}).items()}
            return _construct(Interrupt, fields)
        if tag == "pydantic":
            return _construct(self._cls(v["class"]), {k: d(x) for k, x in v["fields"].items()})
        if tag == "dataclass":
            return _construct(self._cls(v["class"]), {k: d(x) for k, x in v["fields"].items()})
        if tag == "object":
            raise DisallowedTypeError(
                f"class {v.get('class')} was dumped as its repr only and cannot be rebuilt"
            )
        raise DisallowedTypeError(f"unknown tag {tag!r}")


def _hashable(value: Any) -> Any:
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value


def _with_tz(value: Any, tz: str | None) -> Any:
    if tz is None or value.tzinfo is None or str(value.tzinfo) == tz:
        return value
    try:
        from zoneinfo import ZoneInfo

        zone = ZoneInfo(tz)
    except Exception:  # noqa: BLE001 - keep the fixed offset the ISO text carries
        return value
    if isinstance(value, _dt.datetime):
        return value.astimezone(zone)
    return value.replace(tzinfo=zone)


def _construct(cls: Any, fields: dict[str, Any]) -> Any:
    """``cls(**fields)``, as the savers' own serializers rebuild dataclasses and models."""
    try:
        return cls(**fields)
    except Exception:  # noqa: BLE001 - e.g. a validator; rebuild without validation
        construct = getattr(cls, "model_construct", None) or getattr(cls, "construct", None)
        if construct is None:
            raise
        return construct(**fields)


def decode_record(
    decoder: Decoder,
    raw: dict[str, Any],
    blobs: dict[tuple[str, str, str], Any] | None = None,
) -> dict[str, Any]:
    """The Python form of one dump record (see :mod:`migrator.worker.transforms`).

    Args:
        decoder: Decodes tagged values (allowlist enforced).
        raw: The checkpoint record as read from the dump.
        blobs: The thread's decoded blob records by ``(ns, channel, version key)``;
            a value referenced from several checkpoints is one shared object.

    Raises:
        DumpFormatError: a referenced blob record is missing.
    """
    checkpoint = decoder.decode(raw["checkpoint"])
    values = {k: decoder.decode(v) for k, v in raw["channel_values"].items()}
    for channel, version in (raw.get("channel_blobs") or {}).items():
        key = (raw["checkpoint_ns"], channel, version_key(version))
        if blobs is None or key not in blobs:
            raise DumpFormatError(
                f"{raw['thread_id']}/{raw['checkpoint_ns'] or '(root)'}/{raw['checkpoint_id']}: "
                f"no blob record for channel {channel} version {version}"
            )
        if channel in values:
            raise DumpFormatError(f"channel {channel} is both inline and a blob reference")
        values[channel] = blobs[key]
    checkpoint["channel_values"] = values
    return {
        "thread_id": raw["thread_id"],
        "checkpoint_ns": raw["checkpoint_ns"],
        "checkpoint_id": raw["checkpoint_id"],
        "parent_checkpoint_id": raw["parent_checkpoint_id"],
        "checkpoint": checkpoint,
        "metadata": decoder.decode(raw["metadata"]),
        "pending_writes": [
            {
                "task_id": w["task_id"],
                "task_path": w.get("task_path", ""),
                "channel": w["channel"],
                "value": decoder.decode(w["value"]),
            }
            for w in raw["pending_writes"]
        ],
    }


def split_blobs(
    decoder: Decoder, raw_thread: list[dict[str, Any]]
) -> tuple[dict[tuple[str, str, str], Any], list[dict[str, Any]]]:
    """A thread's decoded blob records (each decoded once) and its checkpoint records.

    Raises:
        DumpFormatError: a blob record appears twice.
        DisallowedTypeError: a blob names a class outside the allowlist.
    """
    blobs: dict[tuple[str, str, str], Any] = {}
    checkpoints: list[dict[str, Any]] = []
    for raw in raw_thread:
        if raw["kind"] != "blob":
            checkpoints.append(raw)
            continue
        key = (raw["checkpoint_ns"], raw["channel"], version_key(raw["version"]))
        if key in blobs:
            raise DumpFormatError(f"{raw['thread_id']}: blob {key} appears twice")
        try:
            if "base" in raw:  # a list: the first ``keep`` elements of the base blob + these
                base_key = (raw["checkpoint_ns"], raw["channel"], version_key(raw["base"]))
                base = blobs.get(base_key)
                keep = raw["keep"]
                if (
                    type(base) is not list
                    or type(keep) is not int
                    or not 0 < keep <= len(base)
                    or type(raw["value"]) is not list
                ):
                    raise DumpFormatError(f"{raw['thread_id']}: blob {key} has a bad base")
                blobs[key] = base[:keep] + [decoder.decode(v) for v in raw["value"]]
            else:
                blobs[key] = decoder.decode(raw["value"])
        except DisallowedTypeError as exc:
            raise DisallowedTypeError(
                f"{raw['thread_id']}/{raw['checkpoint_ns'] or '(root)'}/"
                f"channel {raw['channel']}: {exc}"
            ) from exc
    return blobs, checkpoints
