"""The dump file: gzip-compressed JSON lines, one gzip member per part.

Written by the dump op (:class:`GzipLines`, compressing in a thread of its own)
and read by the restore op (:func:`read_dump`, :func:`by_thread`). The host has
checked the file's sha256 and its manifest; what is read here is still checked
as it streams: the header's format, contiguous threads, the trailer's counts
(:class:`DumpFormatError` otherwise). A dump of an encrypted database is
encrypted with the app's cipher (:mod:`migrator.worker.cipher`): it never holds
a value in plaintext.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from migrator.worker.cipher import MAGIC, DecryptingReader, EncryptingWriter, encrypted_file
from migrator.worker.privatefiles import open_private

DUMP_FORMAT = "langgraph-migrator/dump@2"
#: Formats a restore reads (``@1`` has no blob records: every value inline).
READABLE_FORMATS = ("langgraph-migrator/dump@1", DUMP_FORMAT)
MANIFEST_FORMAT = "langgraph-migrator/dump-manifest@1"


class DumpFormatError(Exception):
    """The dump file is not a complete, well-formed dump."""


class _Window(io.RawIOBase):
    """``length`` bytes of a file from its current position (one part of a dump)."""

    def __init__(self, fh: Any, length: int) -> None:
        self._fh, self._left = fh, length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._fh.read(min(len(buffer), self._left))
        self._left -= len(data)
        buffer[: len(data)] = data
        return len(data)


@contextmanager
def _open_text(path: str, offset: int, length: int | None, cipher: Any = None) -> Iterator[Any]:
    """The dump's text: the whole file, or the gzip member at ``offset`` (``length`` bytes).

    A part written encrypted (:class:`~migrator.worker.cipher.EncryptingWriter`)
    is decrypted with ``cipher`` on the way.
    """
    with open(path, "rb") as raw:
        raw.seek(offset)
        if length is None:
            length = os.fstat(raw.fileno()).st_size - offset
        window: Any = io.BufferedReader(_Window(raw, length), 1 << 20)
        if encrypted_file(window.peek(len(MAGIC))):
            window = io.BufferedReader(DecryptingReader(window, cipher), 1 << 20)
        with gzip.GzipFile(fileobj=window) as gz, io.TextIOWrapper(gz, encoding="utf-8") as fh:
            yield fh


def _json_loads() -> Callable[[str], Any]:
    """``orjson.loads`` where it is installed (langgraph's SDK brings it), else ``json.loads``.

    Whatever orjson rejects (integers beyond 64 bits, ``NaN``) is parsed by
    ``json.loads``, which also raises for malformed lines as before.
    """
    try:
        import orjson
    except ImportError:
        return json.loads

    def loads(line: str) -> Any:
        try:
            return orjson.loads(line)
        except orjson.JSONDecodeError:
            return json.loads(line)

    return loads


def read_dump(
    path: str, offset: int = 0, length: int | None = None, *, cipher: Any = None
) -> Iterator[dict[str, Any]]:
    """Raw records of a dump (``blob`` and ``checkpoint``), header and trailer checked.

    Args:
        path: The dump file.
        offset: Where the part to read starts (a dump made with ``--jobs`` has
            one gzip member per part; the manifest lists them).
        length: The part's length in bytes (None: the whole file, one part).
        cipher: The app's cipher, for a dump written encrypted.

    Raises:
        DumpFormatError: not gzip/JSON lines, unknown format or record kind, blob
            records in a ``@1`` dump, no trailer, wrong counts.
    """
    count = 0
    blobs = 0
    ended = False
    loads = _json_loads()
    try:
        with _open_text(path, offset, length, cipher) as fh:
            first = json.loads(fh.readline() or "null")
            if not isinstance(first, dict) or first.get("format") not in READABLE_FORMATS:
                raise DumpFormatError(f"not a {DUMP_FORMAT} file")
            kinds = ("checkpoint", "blob") if first["format"] == DUMP_FORMAT else ("checkpoint",)
            for line in fh:
                if ended:
                    raise DumpFormatError("data after the end record")
                record = loads(line)
                kind = record.get("kind") if isinstance(record, dict) else None
                if kind == "end":
                    if record.get("records") != count or record.get("blobs", 0) != blobs:
                        raise DumpFormatError(
                            f"end record says {record.get('records')} records and "
                            f"{record.get('blobs', 0)} blobs, read {count} and {blobs}"
                        )
                    ended = True
                    continue
                if kind not in kinds:
                    raise DumpFormatError(f"unexpected record kind {kind!r}")
                if kind == "blob":
                    blobs += 1
                else:
                    count += 1
                yield record
    except (OSError, EOFError, ValueError, UnicodeDecodeError) as exc:
        raise DumpFormatError(f"unreadable dump: {type(exc).__name__}: {exc}") from exc
    if not ended:
        raise DumpFormatError("the dump has no end record (truncated)")


def by_thread(records: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Group the records of one thread (the dump writes each thread contiguously).

    Raises:
        DumpFormatError: a thread's records are not contiguous.
    """
    batch: list[dict[str, Any]] = []
    done: set[str] = set()
    for record in records:
        if batch and record["thread_id"] != batch[0]["thread_id"]:
            done.add(batch[0]["thread_id"])
            yield batch
            batch = []
        if not batch and record["thread_id"] in done:
            raise DumpFormatError(f"thread {record['thread_id']} is not contiguous in the dump")
        batch.append(record)
    if batch:
        yield batch


class GzipLines:
    """Text into a gzip file, as ``gzip.open(path, "wt", encoding="utf-8")`` writes it.

    The text is handed over in chunks of about ``chunk`` characters to a thread
    that compresses and writes them: zlib releases the GIL, so compression
    overlaps the encoding, and a few large writes cost less than many small ones.
    """

    def __init__(
        self, path: str, compresslevel: int, chunk: int = 1 << 20, *, cipher: Any = None
    ) -> None:
        # Owner-only (it holds state values); the gzip header names ``path`` as
        # ``gzip.open(path)`` would. With the app's ``cipher`` (an encrypted
        # database), the compressed stream is encrypted in frames as it is written.
        self._raw = open_private(path, "wb")
        self._sink: Any = self._raw if cipher is None else EncryptingWriter(self._raw, cipher)
        try:
            self._file = gzip.GzipFile(
                filename=path, mode="wb", compresslevel=compresslevel, fileobj=self._sink
            )
        except BaseException:
            self._raw.close()
            raise
        self._chunk = chunk
        self._parts: list[str] = []
        self._size = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="dump-gzip", daemon=True)
        self._thread.start()

    def write(self, text: str) -> None:
        """Queue ``text`` for the file."""
        self._parts.append(text)
        self._size += len(text)
        if self._size >= self._chunk:
            self._hand_over()

    def _hand_over(self) -> None:
        if self._error is not None:
            raise self._error
        text = "".join(self._parts)
        self._parts = []
        self._size = 0
        if os.linesep != "\n":
            text = text.replace("\n", os.linesep)
        self._queue.put(text.encode("utf-8"))

    def _drain(self) -> None:
        try:
            while (data := self._queue.get()) is not None:
                self._file.write(data)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the writing thread
            self._error = exc
            while self._queue.get() is not None:  # keep the writer from blocking
                pass

    def __enter__(self) -> GzipLines:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if exc_info[0] is None:
                self._hand_over()
        finally:
            self._queue.put(None)
            self._thread.join()
            try:
                self._file.close()
                if self._sink is not self._raw:
                    self._sink.close()  # its last frame
            finally:
                self._raw.close()
        if self._error is not None and exc_info[0] is None:
            raise self._error
