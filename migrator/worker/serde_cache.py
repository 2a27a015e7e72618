"""A restore's memoized (de)serialization: message lists built from their elements.

Runs in the NEW version environment, in front of the new saver's own
serializer (langgraph's ``JsonPlusSerializer``). A thread's message list grows
by a message or two per checkpoint, and every version of it is one blob, so a
thread of n checkpoints holds n lists sharing their first elements. msgpack is
compositional: an array is its header (the element count) followed by its
elements' encodings, so both directions can work element by element:

* writing (:class:`ListEncodingSerde`): the decoded records share the message
  objects between versions (:func:`migrator.worker.op_restore.split_blobs`);
  each distinct element object is encoded once and the encodings are joined,
  exactly the bytes the inner serializer produces for the whole list;
* reading back (:class:`ReadBackSerde`): a version whose bytes are the start
  of a version loaded before is that version's first elements.

Anything else goes to the inner serializer.
"""

from __future__ import annotations

from typing import Any

from migrator.worker.op_dump import msgpack_array_head, msgpack_array_items

MSGPACK = "msgpack"
#: A one-element msgpack array starts with this header byte (fixarray of 1).
ONE_ELEMENT_ARRAY = b"\x91"
#: msgpack's ``nil``: one byte, so ``[None] * n`` is the array header plus n bytes.
NIL = b"\xc0"
#: How many joined encodings are compared with the inner serializer's before
#: trusting the join for the rest of the run.
SELF_CHECKS = 16


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

    Like :class:`migrator.worker.op_dump.CachingSerde` (equal bytes load to the
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
