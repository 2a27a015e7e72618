"""Encrypted values and encrypted dump files in the worker (issue 14 part 3)."""

from __future__ import annotations

import gzip
import json
import secrets
from pathlib import Path

import pytest
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from migrator.worker import cipher as worker_cipher
from migrator.worker.cipher import CipherKeyError, cipher_of
from migrator.worker.dumpfile import GzipLines, read_dump
from migrator.worker.nullguard import GuardedSerde, UndecodableValueError

SECRET = "the-launch-code-4711"


def _serde(key: bytes | None = None) -> EncryptedSerializer:
    return EncryptedSerializer.from_pycryptodome_aes(key=key or secrets.token_bytes(32))


def test_guard_decrypts_and_loads_the_value() -> None:
    serde = _serde()
    stored = serde.dumps_typed({"note": SECRET})
    assert stored[0] == "msgpack+aes"
    assert SECRET.encode() not in stored[1]
    assert GuardedSerde(serde).loads_typed(stored) == {"note": SECRET}


def test_guard_loads_plaintext_rows_beside_encrypted_ones() -> None:
    plain = JsonPlusSerializer().dumps_typed([1, 2])
    assert GuardedSerde(_serde()).loads_typed(plain) == [1, 2]


def test_wrong_key_raises_naming_the_variable() -> None:
    stored = _serde().dumps_typed({"note": SECRET})
    with pytest.raises(CipherKeyError, match="LANGGRAPH_AES_KEY") as exc:
        GuardedSerde(_serde()).loads_typed(stored)
    assert SECRET not in str(exc.value)


def test_the_profiles_key_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(worker_cipher.KEY_ENV_VAR, "SHOP_CHECKPOINT_KEY")
    stored = _serde().dumps_typed(1)
    with pytest.raises(CipherKeyError, match="SHOP_CHECKPOINT_KEY"):
        GuardedSerde(_serde()).loads_typed(stored)


def test_encrypted_row_without_a_cipher_is_an_error_not_a_value() -> None:
    stored = _serde().dumps_typed({"note": SECRET})
    with pytest.raises(CipherKeyError, match="no cipher"):
        GuardedSerde(JsonPlusSerializer()).loads_typed(stored)


def test_an_unimportable_class_inside_ciphertext_is_caught() -> None:
    """The null guard sees inside encrypted rows (H-UNDECODABLE-NULL)."""
    serde = _serde()
    payload = serde.serde.dumps_typed({"x": 1})[1]
    # An ext-5 (pydantic v2) value naming a module that does not exist here.
    import ormsgpack

    ext = ormsgpack.Ext(5, ormsgpack.packb(["no_such_app.models", "Order", {"sku": "x"}]))
    payload = ormsgpack.packb({"x": ext})
    name, data = serde.cipher.encrypt(payload)
    with pytest.raises(UndecodableValueError, match="no_such_app.models.Order"):
        GuardedSerde(serde).loads_typed((f"msgpack+{name}", data))


def test_cipher_of_looks_through_wrappers() -> None:
    serde = _serde()
    assert cipher_of(GuardedSerde(serde)) is serde.cipher
    assert cipher_of(JsonPlusSerializer()) is None


def _write(path: Path, cipher: object, lines: list[dict[str, object]]) -> None:
    with GzipLines(str(path), compresslevel=2, chunk=64, cipher=cipher) as out:
        for line in lines:
            out.write(json.dumps(line) + "\n")


def _records() -> list[dict[str, object]]:
    body = [{"kind": "checkpoint", "thread_id": f"t{i}", "note": SECRET * 50} for i in range(300)]
    head = {"kind": "header", "format": "langgraph-migrator/dump@2"}
    return [head, *body, {"kind": "end", "records": len(body), "blobs": 0}]


def test_encrypted_dump_round_trips_and_holds_no_plaintext(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_cipher, "FRAME", 4096)  # several frames
    serde = _serde()
    path = tmp_path / "d.lgdump"
    _write(path, serde.cipher, _records())
    raw = path.read_bytes()
    assert raw.startswith(worker_cipher.MAGIC)
    assert SECRET.encode() not in raw
    with pytest.raises(OSError):
        gzip.decompress(raw)
    got = list(read_dump(str(path), cipher=serde.cipher))
    assert len(got) == 300 and got[0]["note"] == SECRET * 50


def test_encrypted_dump_with_the_wrong_key_or_none(tmp_path: Path) -> None:
    path = tmp_path / "d.lgdump"
    _write(path, _serde().cipher, _records())
    with pytest.raises(CipherKeyError, match="LANGGRAPH_AES_KEY"):
        list(read_dump(str(path), cipher=_serde().cipher))
    with pytest.raises(CipherKeyError, match="no cipher"):
        list(read_dump(str(path)))


def test_plaintext_dump_is_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "p.lgdump"
    _write(path, None, _records())
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    assert len(list(read_dump(str(path), cipher=_serde().cipher))) == 300
