"""Encrypted checkpoints inside a worker: the app's cipher, its key, encrypted dump files.

An app that encrypts its checkpoints (langgraph's ``EncryptedSerializer``) stores
``checkpoint_blobs.blob`` and ``checkpoint_writes.blob`` as ``<type>+<cipher>``
(``msgpack+aes``): nonce + tag + ciphertext, no key id. Rows without ``+`` are
plaintext, so one table may hold both. Every reader here decrypts through the
app's own serializer (the profile's ``serde``) and every writer re-encrypts
through the new saver; ciphertext is never compared or copied as data.

A wrong key is found before any value is read (:func:`check_key`: one stored
encrypted row per table must decrypt), and raises :class:`CipherKeyError` naming
the variable the key comes from: never a diff of garbage, never a ``None``.

A dump of such a database holds the values decoded, so it is encrypted with the
same cipher (:class:`EncryptingWriter`, :class:`DecryptingReader`): a sequence of
frames ``MAGIC | u32 len(name) | name | u32 len(data) | data``, each frame the
cipher's output for up to :data:`FRAME` bytes of the gzip stream.

Stdlib only (plus the app's cipher); runs in every version environment.
"""

from __future__ import annotations

import io
import os
import struct
from typing import Any

#: The variable langgraph's ``EncryptedSerializer.from_pycryptodome_aes`` reads.
DEFAULT_KEY_ENV = "LANGGRAPH_AES_KEY"
#: Worker environment variable naming the app's key variable (from the profile's ``key_env``).
KEY_ENV_VAR = "LANGGRAPH_MIGRATOR_WORKER_KEY_ENV"
#: The first bytes of an encrypted dump part (a plaintext one starts with gzip's 1f 8b).
MAGIC = b"LGMC"
#: Plaintext bytes per frame.
FRAME = 1 << 20

#: One encrypted row per table, to prove the key before anything is read.
ENCRYPTED_ROW_SQL = {
    "checkpoint_blobs": (
        "SELECT type, blob FROM checkpoint_blobs WHERE position('+' in type) > 0 LIMIT 1"
    ),
    "checkpoint_writes": (
        "SELECT type, blob FROM checkpoint_writes WHERE position('+' in type) > 0 LIMIT 1"
    ),
}


class CipherKeyError(Exception):
    """Encrypted values cannot be decrypted here: no cipher, or not the key they were written with.

    The host reports it as a configuration error (exit 2) naming the key variable.
    """


def key_env() -> str:
    """The name of the variable the app's key comes from (for messages)."""
    return os.environ.get(KEY_ENV_VAR) or DEFAULT_KEY_ENV


def cipher_of(serde: Any) -> Any | None:
    """The cipher of an ``EncryptedSerializer``-shaped serializer (``.cipher`` with
    ``encrypt``/``decrypt``), looking through wrappers that keep theirs in ``.inner``."""
    seen = 0
    while serde is not None and seen < 8:
        cipher = getattr(serde, "__dict__", {}).get("cipher")
        if cipher is not None and hasattr(cipher, "decrypt") and hasattr(cipher, "encrypt"):
            return cipher
        serde = getattr(serde, "__dict__", {}).get("inner")
        seen += 1
    return None


def split_type(type_: str) -> tuple[str, str | None]:
    """``"msgpack+aes"`` -> ``("msgpack", "aes")``; a plaintext type -> ``(type, None)``."""
    base, sep, name = type_.partition("+")
    return (base, name) if sep else (type_, None)


def decrypt(cipher: Any | None, type_: str, payload: bytes) -> tuple[str, bytes]:
    """The plaintext ``(type, bytes)`` of an encrypted stored value.

    Raises:
        CipherKeyError: no cipher is configured, or it fails (wrong key, other cipher).
    """
    base, name = split_type(type_)
    if name is None:
        return type_, payload
    if cipher is None:
        raise CipherKeyError(
            f"a stored value is encrypted ({type_}) and the serializer here has no cipher: "
            "name the app's serializer (serde in [tool.langgraph-migrator.app] or --serde) "
            f"and set {key_env()} to its key"
        )
    try:
        return base, bytes(cipher.decrypt(name, bytes(payload)))
    except Exception as exc:  # noqa: BLE001 - any failure to decrypt is a key problem
        raise CipherKeyError(
            f"a stored {type_} value does not decrypt with the key in {key_env()} "
            f"({type(exc).__name__}: {exc}): it is not the key these rows were written with"
        ) from None


def check_key(conn: Any, serde: Any) -> int:
    """Decrypt one stored encrypted row per table with ``serde``'s cipher.

    Returns:
        How many rows were checked (0: no encrypted row, or no tables).

    Raises:
        CipherKeyError: a row does not decrypt (wrong key), or rows are
            encrypted and ``serde`` has no cipher.
    """
    cipher = cipher_of(serde)
    checked = 0
    for table, query in ENCRYPTED_ROW_SQL.items():
        exists = conn.execute("SELECT to_regclass(%s) AS t", (table,)).fetchone()
        if _field(exists, "t", 0) is None:
            continue
        row = conn.execute(query).fetchone()
        if row is None:
            continue
        decrypt(cipher, str(_field(row, "type", 0)), bytes(_field(row, "blob", 1)))
        checked += 1
    return checked


def _field(row: Any, name: str, index: int) -> Any:
    if row is None:
        return None
    return row[name] if isinstance(row, dict) else row[index]


# ------------------------------------------------------------------ dump files


class EncryptingWriter(io.RawIOBase):
    """A write-only file that encrypts what it is given in frames onto ``raw``.

    Args:
        raw: The file the frames go to (not closed here).
        cipher: The app's cipher (``encrypt(bytes) -> (name, bytes)``).
    """

    def __init__(self, raw: Any, cipher: Any) -> None:
        self._raw = raw
        self._cipher = cipher
        self._buffer = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._buffer += data
        while len(self._buffer) >= FRAME:
            self._frame(bytes(self._buffer[:FRAME]))
            del self._buffer[:FRAME]
        return len(data)

    def _frame(self, plain: bytes) -> None:
        name, data = self._cipher.encrypt(plain)
        encoded = str(name).encode("utf-8")
        self._raw.write(MAGIC + struct.pack(">I", len(encoded)) + encoded)
        self._raw.write(struct.pack(">I", len(data)) + bytes(data))

    def flush(self) -> None:
        """Nothing to flush before :meth:`close`: a frame is written when full."""

    def close(self) -> None:
        if not self.closed and self._buffer:
            self._frame(bytes(self._buffer))
            self._buffer.clear()
        super().close()


class DecryptingReader(io.RawIOBase):
    """The plaintext of the frames :class:`EncryptingWriter` wrote, read from ``raw``.

    Raises (while reading):
        CipherKeyError: a frame does not decrypt (wrong key), or no cipher.
        ValueError: not a frame where one should start (damaged file).
    """

    def __init__(self, raw: Any, cipher: Any | None) -> None:
        self._raw = raw
        self._cipher = cipher
        self._plain = b""
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._pos >= len(self._plain):
            if not self._next_frame():
                return 0
        size = min(len(buffer), len(self._plain) - self._pos)
        buffer[:size] = self._plain[self._pos : self._pos + size]
        self._pos += size
        return size

    def _next_frame(self) -> bool:
        head = self._exact(len(MAGIC) + 4, allow_eof=True)
        if not head:
            return False
        if head[: len(MAGIC)] != MAGIC:
            raise ValueError("damaged encrypted dump: no frame where one should start")
        name = self._exact(struct.unpack(">I", head[len(MAGIC) :])[0]).decode("utf-8")
        size = struct.unpack(">I", self._exact(4))[0]
        data = self._exact(size)
        if self._cipher is None:
            raise CipherKeyError(
                f"the dump is encrypted ({name}) and the serializer here has no cipher: "
                f"name the app's serializer (serde) and set {key_env()} to its key"
            )
        try:
            self._plain = bytes(self._cipher.decrypt(name, data))
        except Exception as exc:  # noqa: BLE001 - a wrong key
            raise CipherKeyError(
                f"the encrypted dump does not decrypt with the key in {key_env()} "
                f"({type(exc).__name__}: {exc}): it is not the key the dump was written with"
            ) from None
        self._pos = 0
        return True

    def _exact(self, size: int, *, allow_eof: bool = False) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self._raw.read(size - len(data))
            if not chunk:
                if allow_eof and not data:
                    return b""
                raise ValueError("damaged encrypted dump: truncated frame")
            data += chunk
        return data


def encrypted_file(head: bytes) -> bool:
    """Whether a dump part starting with ``head`` is encrypted (frames, not gzip)."""
    return head[: len(MAGIC)] == MAGIC


def app_cipher() -> Any | None:
    """The app profile's cipher in this worker, or None (no serde, or one without a cipher)."""
    from migrator.worker import app

    return cipher_of(app.make_serde())
