"""A value that did not rebuild is an error, never ``None`` (H-UNDECODABLE-NULL).

The savers' serializers rebuild a custom type (an app's pydantic model, Enum or
dataclass) by importing the module the stored value names. When that import
fails, langgraph-checkpoint 2.x returns ``None`` and 4.3+ the raw payload, with at
most a log line: a dump or snapshot taken by a process without the app's code
would record the loss as data. :class:`GuardedSerde` sits in front of every
saver's serializer in the worker and, before a stored msgpack or JSON value is
loaded, lists the classes it names (without constructing anything) and checks
that each one imports here. One that does not raises
:class:`UndecodableValueError` naming the class, so the reading op records an
error at that value (thread, checkpoint, channel) instead of a ``None``.

Encrypted rows (``msgpack+aes``) are decrypted here with the app serializer's
cipher (:mod:`migrator.worker.cipher`), the plaintext is checked the same way,
and handed to the serializer's own inner serializer; a row that does not decrypt
(wrong key, no cipher) raises :class:`~migrator.worker.cipher.CipherKeyError`.

Stdlib + (or)msgpack only; runs in every version environment.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from typing import Any

from migrator.worker.cipher import cipher_of, decrypt

#: msgpack ext codes of langgraph's serializer that name a (module, class):
#: constructor with one arg, positional args, keyword args, a class method,
#: pydantic v1, pydantic v2 (stable since langgraph-checkpoint 2.0).
CLASS_EXT_CODES = frozenset({0, 1, 2, 3, 4, 5})


class UndecodableValueError(Exception):
    """A stored value names a class that cannot be imported in this environment."""


class _Unpacker:
    """Reads msgpack with ormsgpack (newer versions) or msgpack (older ones)."""

    def __init__(self) -> None:
        self._unpack: Callable[[bytes, Callable[[int, bytes], Any]], Any]
        try:
            import ormsgpack

            opt = ormsgpack.OPT_NON_STR_KEYS
            self._unpack = lambda data, hook: ormsgpack.unpackb(data, ext_hook=hook, option=opt)
        except ImportError:
            msgpack: Any = importlib.import_module("msgpack")
            self._unpack = lambda data, hook: msgpack.unpackb(
                data, ext_hook=hook, strict_map_key=False, raw=False
            )

    def classes(self, data: bytes) -> set[tuple[str, str]]:
        """Every (module, class) the encoded value names, at any depth."""
        found: set[tuple[str, str]] = set()

        def hook(code: int, payload: bytes) -> None:
            inner = self._unpack(payload, hook)
            if code in CLASS_EXT_CODES and isinstance(inner, (list, tuple)) and len(inner) >= 2:
                module, name = inner[0], inner[1]
                if isinstance(module, str) and isinstance(name, str):
                    found.add((module, name))
            return None

        self._unpack(data, hook)
        return found


def _json_classes(value: Any, found: set[tuple[str, str]]) -> None:
    """The classes named by ``{"lc": 2, "type": "constructor", "id": [...]}`` envelopes."""
    if isinstance(value, dict):
        ident = value.get("id")
        if (
            value.get("lc") == 2
            and value.get("type") == "constructor"
            and isinstance(ident, list)
            and len(ident) >= 2
            and all(isinstance(p, str) for p in ident)
        ):
            found.add((".".join(ident[:-1]), ident[-1]))
        for item in value.values():
            _json_classes(item, found)
    elif isinstance(value, list):
        for item in value:
            _json_classes(item, found)


class GuardedSerde:
    """A saver's serializer that refuses to turn an unimportable class into ``None``.

    Args:
        inner: The serializer the saver would use (the app's own, or the default).
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._unpacker: _Unpacker | None = None
        self._importable: dict[tuple[str, str], str | None] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def loads_typed(self, data: tuple[str, Any]) -> Any:
        """``inner.loads_typed``, after checking every class the value names imports.

        Raises:
            UndecodableValueError: a named class cannot be imported here.
        """
        type_, payload = data
        if payload is not None and "+" in type_:
            return self._loads_encrypted(type_, payload)
        if payload is not None and type_ in ("msgpack", "json"):
            self.check(type_, payload)
        return self.inner.loads_typed(data)

    def _loads_encrypted(self, type_: str, payload: Any) -> Any:
        """Decrypt with the inner serializer's cipher, check, load with its own serializer."""
        base, plain = decrypt(cipher_of(self.inner), type_, bytes(payload))
        if base in ("msgpack", "json"):
            self.check(base, plain)
        plain_serde = getattr(self.inner, "serde", None)
        if plain_serde is not None and hasattr(plain_serde, "loads_typed"):
            return plain_serde.loads_typed((base, plain))
        return self.inner.loads_typed((type_, payload))  # a cipher wrapper of its own making

    def check(self, type_: str, payload: Any) -> None:
        """Raise when ``payload`` names a class this environment cannot import."""
        raw = bytes(payload)
        if type_ == "msgpack":
            if self._unpacker is None:
                self._unpacker = _Unpacker()
            try:
                names = self._unpacker.classes(raw)
            except Exception:  # noqa: BLE001 - malformed bytes: the serializer itself says so
                return
        else:
            names = set()
            try:
                _json_classes(json.loads(raw), names)
            except ValueError:
                return
        for module, name in names:
            problem = self._problem(module, name)
            if problem:
                raise UndecodableValueError(
                    f"{module}.{name} does not rebuild in this environment ({problem}); "
                    "the saver would read it as None or as its raw payload"
                )

    def _problem(self, module: str, name: str) -> str | None:
        key = (module, name)
        if key not in self._importable:
            self._importable[key] = _import_problem(module, name)
        return self._importable[key]


def _import_problem(module: str, name: str) -> str | None:
    """Why ``module.name`` cannot be imported (the serializer's own lookup), or None."""
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any failure to import is the finding
        return f"{type(exc).__name__}: {exc}"
    if not hasattr(mod, name):
        return f"module {module} has no attribute {name}"
    return None


def guard(serde: Any) -> Any:
    """``serde`` behind a :class:`GuardedSerde` (once)."""
    return serde if isinstance(serde, GuardedSerde) else GuardedSerde(serde)
