"""Memoized (de)serialization in front of a saver's own serializer.

The dump (OLD version environment) loads every blob through
:class:`CachingSerde`: equal bytes load to the same object, once per thread.

The restore (NEW version environment) runs in front of the new saver's own
serializer (langgraph's ``JsonPlusSerializer``). A thread's message list grows
by a message or two per checkpoint, and every version of it is one blob, so a
thread of n checkpoints holds n lists sharing their first elements. msgpack is
compositional: an array is its header (the element count) followed by its
elements' encodings, so both directions can work element by element:

* writing (:class:`ListEncodingSerde`): the decoded records share the message
  objects between versions (:func:`migrator.worker.decode.split_blobs`);
  each distinct element object is encoded once and the encodings are joined,
  exactly the bytes the inner serializer produces for the whole list;
* reading back (:class:`ReadBackSerde`): a version whose bytes are the start
  of a version loaded before is that version's first elements.

Anything else goes to the inner serializer.
"""

from __future__ import annotations

import dataclasses
from typing import Any

MSGPACK = "msgpack"
#: A one-element msgpack array starts with this header byte (fixarray of 1).
ONE_ELEMENT_ARRAY = b"\x91"
#: msgpack's ``nil``: one byte, so ``[None] * n`` is the array header plus n bytes.
NIL = b"\xc0"
#: How many joined encodings are compared with the inner serializer's before
#: trusting the join for the rest of the run.
SELF_CHECKS = 16


class CachingSerde:
    """Memoizes a serializer's ``loads_typed`` by the stored bytes (per thread).

    A saver's ``list()`` loads every blob a checkpoint references, so a thread of
    n checkpoints deserializes its growing message list n times. Equal bytes
    always load to equal values; with the cache they load to the *same* object,
    which also lets the dump encode a (channel, version) once. Everything else
    is delegated to the wrapped serializer.

    Args:
        inner: The saver's own serializer.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        # (type, length, head, tail) -> [(bytes, value)]: hashing a short key and
        # comparing equal-looking bytes costs less than hashing every blob whole.
        self._memo: dict[tuple[str, int, bytes, bytes], list[tuple[bytes, Any]]] = {}
        self._longest: _LoadedArray | None = None

    def loads_typed(self, data: tuple[str, Any]) -> Any:
        """``inner.loads_typed``, memoized by ``(type, bytes)``.

        A msgpack array (a message list) is loaded element by element, each
        distinct element once: msgpack is compositional (an array is its header
        followed by its elements' encodings), so this is the same list, and a
        message repeated in every later version of the list is one object.
        """
        type_, raw = data
        if not isinstance(raw, (bytes, bytearray, memoryview)):
            return self.inner.loads_typed(data)
        buf = bytes(raw)
        key = (str(type_), len(buf), buf[:32], buf[-32:])
        bucket = self._memo.get(key)
        if bucket is None:
            bucket = self._memo[key] = []
        for seen, value in bucket:
            if seen == buf:
                return value
        value = None
        if type_ == "msgpack":
            value = self._load_array(buf)
        if value is None:
            value = self.inner.loads_typed(data)
        bucket.append((buf, value))
        return value

    def _load_array(self, buf: bytes) -> list[Any] | None:
        """``buf`` as a list of memoized elements, or None when it is no msgpack array.

        Versions of a growing list share their leading elements' bytes: an
        array whose elements start, or are the start of, the longest array
        loaded so far reuses that array's elements without splitting or hashing
        them again (``list()`` returns the versions newest first).
        """
        head = msgpack_array_head(buf)
        if head is None:
            return None
        count, start = head
        longest = self._longest
        if longest is not None:
            have = len(longest.items)
            body = memoryview(longest.raw)[longest.start :]
            if count <= have:
                size = longest.ends[count - 1] if count else 0
                if size == len(buf) - start and longest.raw.startswith(
                    memoryview(buf)[start:], longest.start
                ):
                    return longest.items[:count]
            elif buf.startswith(body, start):
                spans = _spans(buf, start + len(body), count - have)
                if spans is not None:
                    items = longest.items + self._elements(buf, spans)
                    ends = longest.ends + [b - start for _, b in spans]
                    self._longest = _LoadedArray(buf, start, items, ends)
                    return items
        spans = _spans(buf, start, count)
        if spans is None:
            return None
        items = self._elements(buf, spans)
        if longest is None or count > len(longest.items):
            self._longest = _LoadedArray(buf, start, items, [b - start for _, b in spans])
        return items

    def _elements(self, buf: bytes, spans: list[tuple[int, int]]) -> list[Any]:
        return [self.loads_typed(("msgpack", buf[a:b])) for a, b in spans]

    def clear(self) -> None:
        """Forget every memoized value (call between threads)."""
        self._memo.clear()
        self._longest = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


_FIXED = {0xC0: 0, 0xC2: 0, 0xC3: 0, 0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
_FIXED.update({0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8})
_FIXEXT = {0xD4: 2, 0xD5: 3, 0xD6: 5, 0xD7: 9, 0xD8: 17}
_SIZED = {0xC4: (1, 0), 0xC5: (2, 0), 0xC6: (4, 0), 0xD9: (1, 0), 0xDA: (2, 0), 0xDB: (4, 0)}
_SIZED.update({0xC7: (1, 1), 0xC8: (2, 1), 0xC9: (4, 1)})  # ext: length, then a type byte
_COUNTED = {0xDC: (2, 1), 0xDD: (4, 1), 0xDE: (2, 2), 0xDF: (4, 2)}


def _skip(buf: bytes, pos: int) -> int:
    """The offset after the msgpack object at ``pos`` (ValueError/IndexError if malformed)."""
    pending = 1
    while pending:
        pending -= 1
        b = buf[pos]
        pos += 1
        if b <= 0x7F or b >= 0xE0:
            continue
        if b <= 0x8F:
            pending += 2 * (b & 0x0F)
        elif b <= 0x9F:
            pending += b & 0x0F
        elif b <= 0xBF:
            pos += b & 0x1F
        elif b in _FIXED:
            pos += _FIXED[b]
        elif b in _FIXEXT:
            pos += _FIXEXT[b]
        elif b in _SIZED:
            width, extra = _SIZED[b]
            pos += width + extra + int.from_bytes(buf[pos : pos + width], "big")
        elif b in _COUNTED:
            width, per = _COUNTED[b]
            pending += per * int.from_bytes(buf[pos : pos + width], "big")
            pos += width
        else:
            raise ValueError(f"msgpack byte 0x{b:02x} at {pos - 1}")
    if pos > len(buf):
        raise ValueError("truncated msgpack")
    return pos


def msgpack_array_items(buf: bytes) -> list[tuple[int, int]] | None:
    """``(start, end)`` of each element when ``buf`` is exactly one msgpack array, else None."""
    head = msgpack_array_head(buf)
    return None if head is None else _spans(buf, head[1], head[0])


def msgpack_array_head(buf: bytes) -> tuple[int, int] | None:
    """(element count, header length) when ``buf`` starts with a whole msgpack array header."""
    if not buf:
        return None
    b = buf[0]
    if 0x90 <= b <= 0x9F:
        return b & 0x0F, 1
    if b in (0xDC, 0xDD):
        width = 2 if b == 0xDC else 4
        if len(buf) < 1 + width:
            return None
        return int.from_bytes(buf[1 : 1 + width], "big"), 1 + width
    return None


def _spans(buf: bytes, pos: int, count: int) -> list[tuple[int, int]] | None:
    """``(start, end)`` of ``count`` objects from ``pos``; None unless they end ``buf``."""
    spans = []
    try:
        for _ in range(count):
            end = _skip(buf, pos)
            spans.append((pos, end))
            pos = end
    except (ValueError, IndexError):
        return None
    return spans if pos == len(buf) else None


@dataclasses.dataclass
class _LoadedArray:
    """A loaded msgpack array: its bytes, header length, elements, and where each
    element ends (offsets from the end of the header)."""

    raw: bytes
    start: int
    items: list[Any]
    ends: list[int]


def caching_saver(saver: Any) -> CachingSerde:
    """Put a :class:`CachingSerde` in front of ``saver``'s serializer; return it."""
    cache = CachingSerde(saver.serde)
    saver.serde = cache
    return cache


def _is_primitive(value: Any) -> bool:
    return value is None or type(value) in (str, int, float, bool)


class ListEncodingSerde:
    """``inner.dumps_typed`` for lists, built from per-element encodings memoized per object.

    An element is encoded as the one-element list ``[item]`` (same nesting depth
    as inside the list, so ``ormsgpack``'s depth limit and ``default`` hook act
    the same), and its bytes after the one-byte header are kept. The header of
    an n-element array is taken from the inner serializer's encoding of
    ``[None] * n``. A list is encoded element-wise only when it is a plain
    ``list`` whose first element is not a JSON primitive (a list of numbers or
    strings is faster in one ``packb`` call); when an element does not come
    back as ``"msgpack"`` (pickle fallback) or anything raises, the whole list
    goes to the inner serializer, which then returns (or raises) what it always
    does. The first :data:`SELF_CHECKS` joined encodings are compared with the
    inner serializer's; a mismatch switches the element-wise path off.

    Elements are memoized by identity and kept alive until :meth:`clear`: the
    values must not be mutated in between (a restore writes a thread's
    records after its transforms ran, and ``put()`` does not change them).

    Args:
        inner: The new saver's serializer.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.enabled = True
        self.checks_left = SELF_CHECKS
        self._items: dict[int, tuple[Any, bytes]] = {}
        self._headers: dict[int, bytes] = {}

    @staticmethod
    def supports(inner: Any) -> bool:
        """``inner`` is langgraph's ``JsonPlusSerializer`` with its own ``dumps_typed``."""
        try:
            from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
        except ImportError:
            return False
        return (
            isinstance(inner, JsonPlusSerializer)
            and type(inner).dumps_typed is JsonPlusSerializer.dumps_typed
        )

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        """Exactly ``inner.dumps_typed(obj)``; element-wise for a list of objects."""
        if not self.enabled or type(obj) is not list or not obj or _is_primitive(obj[0]):
            return self.inner.dumps_typed(obj)  # type: ignore[no-any-return]
        try:
            joined = self._joined(obj)
        except Exception:  # noqa: BLE001 - the inner serializer decides (and raises)
            joined = None
        if joined is None:
            return self.inner.dumps_typed(obj)  # type: ignore[no-any-return]
        if self.checks_left > 0:
            self.checks_left -= 1
            expected = self.inner.dumps_typed(obj)
            if expected != (MSGPACK, joined):
                self.enabled = False
                return expected  # type: ignore[no-any-return]
        return MSGPACK, joined

    def _joined(self, obj: list[Any]) -> bytes | None:
        header = self._header(len(obj))
        if header is None:
            return None
        parts = [header]
        items = self._items
        for item in obj:
            hit = items.get(id(item))
            if hit is None or hit[0] is not item:
                encoded = self._element(item)
                if encoded is None:
                    return None
                hit = items[id(item)] = (item, encoded)
            parts.append(hit[1])
        return b"".join(parts)

    def _element(self, item: Any) -> bytes | None:
        type_, data = self.inner.dumps_typed([item])
        if type_ != MSGPACK or not isinstance(data, bytes) or data[:1] != ONE_ELEMENT_ARRAY:
            return None
        return data[1:]

    def _header(self, count: int) -> bytes | None:
        header = self._headers.get(count)
        if header is None:
            type_, data = self.inner.dumps_typed([None] * count)
            if type_ != MSGPACK or not isinstance(data, bytes) or not data.endswith(NIL * count):
                return None
            header = self._headers[count] = data[: len(data) - count]
        return header

    def clear(self) -> None:
        """Forget the memoized elements (call between threads)."""
        self._items.clear()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


#: How many distinct msgpack arrays a :class:`ReadBackSerde` keeps to match prefixes against.
REFERENCE_ARRAYS = 8


class _Array:
    """A msgpack array loaded element by element: its bytes, element ends and value."""

    def __init__(self, raw: bytes, start: int, spans: list[tuple[int, int]], value: list[Any]):
        self.raw = raw
        self.start = start
        self.ends = [end - start for _, end in spans]  # element ends, relative to ``start``
        self.value = value

    def prefix(self, raw: bytes, start: int, count: int) -> list[Any] | None:
        """The value of ``raw`` (a ``count``-element array whose elements start at
        ``start``) when its elements are this array's first ``count``, else None."""
        body = len(raw) - start
        if count > len(self.ends) or self.ends[count - 1] != body:
            return None
        if not self.raw.startswith(memoryview(raw)[start:], self.start):
            return None
        return self.value if count == len(self.ends) else self.value[:count]


class ReadBackSerde:
    """``inner.loads_typed`` for reading a restored thread back, memoized (per thread).

    Like :class:`CachingSerde` (equal bytes load to the
    same object; a msgpack array is loaded element by element, each distinct
    element once), and faster for the message lists ``list()`` returns newest
    first: an array whose bytes are the first elements of an array loaded
    before (an earlier version of a growing list) is that array's first
    elements, found with one ``bytes.startswith`` instead of splitting and
    hashing every element again. msgpack is compositional: an array is its
    header (the element count) followed by its elements' encodings.

    Args:
        inner: The saver's own serializer.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._memo: dict[tuple[str, bytes], Any] = {}
        self._arrays: list[_Array] = []

    def loads_typed(self, data: tuple[str, Any]) -> Any:
        """``inner.loads_typed(data)``, with shared objects (see the class docstring)."""
        type_, raw = data
        if not isinstance(raw, (bytes, bytearray, memoryview)):
            return self.inner.loads_typed(data)
        raw = bytes(raw)
        header = msgpack_array_head(raw) if type_ == MSGPACK else None
        if header is not None and header[0] > 0:
            for known in reversed(self._arrays):
                found = known.prefix(raw, header[1], header[0])
                if found is not None:
                    return found
        key = (str(type_), raw)
        if key in self._memo:
            return self._memo[key]
        value = self._split(raw, header[1]) if header is not None and header[0] > 0 else None
        if value is None:
            value = self.inner.loads_typed(data)
        self._memo[key] = value
        return value

    def _split(self, raw: bytes, start: int) -> list[Any] | None:
        spans = msgpack_array_items(raw)
        if spans is None:
            return None
        value = [self.loads_typed((MSGPACK, raw[a:b])) for a, b in spans]
        if len(spans) < 2:  # only an equal array would match: the memo has it
            return value
        if len(self._arrays) >= REFERENCE_ARRAYS:  # keep the longest lists to match against
            self._arrays.remove(min(self._arrays, key=lambda a: len(a.ends)))
        self._arrays.append(_Array(raw, start, spans, value))
        return value

    def clear(self) -> None:
        """Forget every memoized value (call between threads)."""
        self._memo.clear()
        self._arrays.clear()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
