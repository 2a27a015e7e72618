"""Encrypted checkpoints end to end (issue 14 part 3).

orderbot is seeded through langgraph's ``EncryptedSerializer`` by a real old
version (checkpoint-postgres 2.0.25 with pycryptodome), some threads encrypted
and one plaintext in the same tables. Every read goes through the app's serde
(``--serde orderbot.persistence:encrypted_serde``, key in ``LANGGRAPH_AES_KEY``,
generated here): the dump is encrypted, the restore re-encrypts through the new
saver, values compare equal after decryption, and a wrong or missing key is
exit 2 naming the variable, with nothing written and no value in any output.
"""

from __future__ import annotations

import gzip
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from migrator import envs
from migrator.app.profile import load_profile
from migrator.compare import compare_snapshots
from migrator.postgres import Server, scratch_database
from tests.integration.orderbot import run_orderbot
from tests.integration.test_plan import catalog_state

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

APP_DIR = Path(__file__).resolve().parents[1] / "apps" / "orderbot"
APP_SRC = APP_DIR / "src"
OLD = "langgraph-checkpoint-postgres==2.0.25 pycryptodome==3.23.0"
SERDE = "orderbot.persistence:encrypted_serde"
KEY_ENV = "LANGGRAPH_AES_KEY"
THREADS = ["order-1", "order-2", "return-1"]
ENCRYPTED = "order-1,return-1"  # order-2 stays plaintext: mixed tables
#: Values of the encrypted threads stored only inside encrypted blobs (return-1's
#: order note, order-1's SKU): none may appear in a dump, report or output.
SECRETS = ("too small", "MUG-01")
APP_FLAGS = ("--serde", SERDE, "--key-env", KEY_ENV)
APP_TYPES = ("orderbot.models.Order", "orderbot.models.Shipment", "orderbot.models.Status")


def _env(spec: str) -> envs.VersionEnv:
    return envs.ensure_env(envs.parse_version_set(spec))


def _child_env(key: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", KEY_ENV)}
    if key is not None:
        env[KEY_ENV] = key
    return env


def _seed(env: envs.VersionEnv, dsn: str, key: str, *args: str) -> None:
    run_orderbot(env, *args, dsn, extra_env={KEY_ENV: key})


def _cli(key: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from migrator.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=APP_DIR,
        stdin=subprocess.DEVNULL,
        env=_child_env(key),
    )


def _types(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT type, count(*) FROM (SELECT type FROM checkpoint_blobs"
            " UNION ALL SELECT type FROM checkpoint_writes) t GROUP BY type"
        ).fetchall()
    return {str(t): int(n) for t, n in rows}


def _ciphertexts(dsn: str) -> set[bytes]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT blob FROM checkpoint_blobs WHERE type LIKE '%+%'"
            " UNION ALL SELECT blob FROM checkpoint_writes WHERE type LIKE '%+%'"
        ).fetchall()
    return {bytes(r[0]) for r in rows}


def _snapshot(env: envs.VersionEnv, dsn: str, key: str) -> dict[str, Any]:
    profile = load_profile(APP_DIR, serde=SERDE, key_env=KEY_ENV)
    request = {
        "dsn": dsn,
        "threads": [{"thread_id": t, "canary": None} for t in THREADS],
        "user_canaries": None,
        "include_history": False,
    }
    return envs.run_worker(
        env, "snapshot", request, timeout=600, app=profile, extra_env={KEY_ENV: key}
    )


def _no_secret(*texts: str | bytes) -> None:
    for text in texts:
        data = text.encode() if isinstance(text, str) else text
        for secret in SECRETS:
            assert secret.encode() not in data, secret


@pytest.fixture(scope="module")
def old_env() -> envs.VersionEnv:
    return _env(OLD)


@pytest.fixture
def key() -> str:
    return secrets.token_hex(16)  # 32 characters: an AES-256 key, made for this test


@pytest.fixture
def enc_db(pg_default: Server, old_env: envs.VersionEnv, key: str) -> Iterator[str]:
    with scratch_database(pg_default) as dsn:
        _seed(old_env, dsn, key, "--encrypt", "--only", ENCRYPTED)
        _seed(old_env, dsn, key, "--only", "order-2")
        yield dsn


def test_seeded_tables_are_mixed(enc_db: str) -> None:
    types = _types(enc_db)
    assert types.get("msgpack+aes", 0) > 0, types
    assert types.get("msgpack", 0) > 0, types


def test_dump_and_restore_round_trip_encrypted(
    enc_db: str, pg_default: Server, old_env: envs.VersionEnv, key: str, tmp_path: Path
) -> None:
    before = _snapshot(old_env, enc_db, key)
    text = json.dumps(before)
    assert '{"__error__"' not in text  # no value failed to load
    assert "orderbot.models.Order" in text  # decrypted and rebuilt, not garbage
    out = tmp_path / "enc.lgdump"
    proc = _cli(key, "dump", "--dsn", enc_db, "--from", OLD, "--out", str(out), *APP_FLAGS)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    raw = out.read_bytes()
    assert raw[:2] != b"\x1f\x8b"  # not a plain gzip stream
    with pytest.raises(OSError):
        gzip.decompress(raw)
    manifest = Path(f"{out}.manifest.json").read_text()
    _no_secret(raw, manifest, proc.stdout, proc.stderr)
    assert "orderbot.models.Order" in manifest
    assert json.loads(manifest)["encrypted"] is True
    assert "needs the same key" in proc.stdout

    new_env = _env("current")
    with scratch_database(pg_default) as target:
        allow = [a for t in APP_TYPES for a in ("--allow-type", t)]
        proc = _cli(
            key, "restore", "--dsn", target, str(out), "--to", "current", *allow, *APP_FLAGS
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        _no_secret(proc.stdout, proc.stderr)
        types = _types(target)
        assert types.get("msgpack+aes", 0) > 0, types  # re-encrypted through the new saver
        # Re-encrypted with fresh nonces: no ciphertext was copied.
        assert not (_ciphertexts(enc_db) & _ciphertexts(target))
        after = _snapshot(new_env, target, key)
    diff = compare_snapshots(before, after)
    breaking = [d.summary() for d in diff.differences if d.severity == "breaking"]
    assert breaking == []


def test_wrong_key_is_exit_2_naming_the_variable(enc_db: str, key: str, tmp_path: Path) -> None:
    proc = _cli(key, "canary", "seed", "--dsn", enc_db, "--with", OLD, "-q", *APP_FLAGS)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "wrong.lgdump"
    wrong = secrets.token_hex(16)
    proc = _cli(wrong, "dump", "--dsn", enc_db, "--from", OLD, "--out", str(out), *APP_FLAGS)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert KEY_ENV in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()
    _no_secret(proc.stdout, proc.stderr)
    proc = _cli(wrong, "verify", "--dsn", enc_db, "--with", OLD, *APP_FLAGS)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert KEY_ENV in proc.stdout + proc.stderr


def test_missing_key_is_exit_2_naming_the_variable(enc_db: str, tmp_path: Path) -> None:
    out = tmp_path / "nokey.lgdump"
    proc = _cli(None, "dump", "--dsn", enc_db, "--from", OLD, "--out", str(out), *APP_FLAGS)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert KEY_ENV in proc.stdout + proc.stderr
    assert not out.exists()


def test_encrypted_rows_without_the_apps_serde_are_exit_2(enc_db: str, tmp_path: Path) -> None:
    out = tmp_path / "noserde.lgdump"
    proc = _cli(None, "dump", "--dsn", enc_db, "--from", OLD, "--out", str(out))
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "encrypted" in proc.stdout + proc.stderr
    assert not out.exists()


def test_migrate_fallback_dump_restore_keeps_encrypted_values(
    enc_db: str, old_env: envs.VersionEnv, pg_default: Server, key: str, tmp_path: Path
) -> None:
    proc = _cli(key, "canary", "seed", "--dsn", enc_db, "--with", OLD, "-q", *APP_FLAGS)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    before = _snapshot(old_env, enc_db, key)
    report = tmp_path / "migrate.json"
    proc = _cli(
        key,
        "migrate",
        "--dsn",
        enc_db,
        "--scratch-dsn",
        pg_default.dsn,
        "--from",
        OLD,
        "--fallback",
        "dump-restore",
        "--json",
        str(report),
        "--backup-dir",
        str(tmp_path / "backups"),
        "-q",
        *APP_FLAGS,
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    after = _snapshot(_env("current"), enc_db, key)
    diff = compare_snapshots(before, after)
    breaking = [d.summary() for d in diff.differences if d.severity == "breaking"]
    assert [b for b in breaking if "H-METADATA-WRITES" not in b] == []
    assert _types(enc_db).get("msgpack+aes", 0) > 0
    _no_secret(proc.stdout, proc.stderr, report.read_text())
    for path in tmp_path.rglob("*"):
        if path.is_file():
            _no_secret(path.read_bytes())


def test_scan_types_reads_encrypted_rows_through_the_apps_serde(enc_db: str, key: str) -> None:
    proc = _cli(key, "scan-types", "--dsn", enc_db, "--json", "-", "-q", *APP_FLAGS)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    scan = json.loads(proc.stdout)
    stored = _types(enc_db)
    assert scan["encrypted"]["aes"] == sum(n for t, n in stored.items() if t.endswith("+aes"))
    assert scan["plaintext_rows"] > 0  # order-2 is plaintext
    found = {t["type"]: t for t in scan["types"]}
    assert set(APP_TYPES) <= set(found)
    assert found["orderbot.models.Order"]["threads"] == 3  # inside ciphertext too
    _no_secret(proc.stdout, proc.stderr)
    wrong = _cli(secrets.token_hex(16), "scan-types", "--dsn", enc_db, "-q", *APP_FLAGS)
    assert wrong.returncode == 2, wrong.stdout[-3000:] + wrong.stderr[-3000:]
    assert KEY_ENV in wrong.stdout + wrong.stderr


def test_gate_reads_copied_encrypted_threads_through_the_apps_serde(
    enc_db: str, key: str, tmp_path: Path
) -> None:
    out = tmp_path / "gate.json"
    threads = [a for t in THREADS for a in ("--thread", t)]
    args = ["upgrade-check", "--from", OLD, "--to", "current", "--pg", "local"]
    args += ["--threads-from", enc_db, *threads, "--canary", "messages", "--fallback", "none"]
    proc = _cli(key, *args, "--json", str(out), *APP_FLAGS)
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    for thread in THREADS:
        drift = [c for c in report["checks"] if c["check"] == "drift" and c["thread_id"] == thread]
        assert drift and drift[0]["status"] == "pass", drift  # decrypted values compare equal
    _no_secret(proc.stdout, proc.stderr, out.read_text())
    wrong = _cli(secrets.token_hex(16), *args, "--json", str(tmp_path / "w.json"), *APP_FLAGS)
    assert wrong.returncode == 2, wrong.stdout[-3000:] + wrong.stderr[-3000:]
    assert KEY_ENV in wrong.stdout + wrong.stderr


def test_restore_with_the_wrong_key_is_exit_2_naming_the_variable(
    enc_db: str, pg_default: Server, key: str, tmp_path: Path
) -> None:
    """It was exit 5 with the hint "fix the transform or the data" (new-user trial)."""
    out = tmp_path / "good.lgdump"
    proc = _cli(key, "dump", "--dsn", enc_db, "--from", OLD, "--out", str(out), *APP_FLAGS)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    wrong = secrets.token_hex(16)
    with scratch_database(pg_default) as target:
        allow = [a for t in APP_TYPES for a in ("--allow-type", t)]
        proc = _cli(
            wrong, "restore", "--dsn", target, str(out), "--to", "current", *allow, *APP_FLAGS
        )
        assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
        error = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        assert len(error) == 1 and KEY_ENV in error[0], proc.stderr[-3000:]
        assert "worker op" not in error[0]  # the cause first, not the tool's plumbing
        assert "fix the transform" not in proc.stderr
        with psycopg.connect(target) as conn:  # nothing restored: not even the tables
            assert conn.execute("SELECT to_regclass('checkpoint_blobs')").fetchone() == (None,)
        _no_secret(proc.stdout, proc.stderr)
    # migrate read no value in place, so a wrong key passed it: now proved first.
    before = catalog_state(enc_db)
    proc = _cli(
        wrong,
        "migrate",
        "--dsn",
        enc_db,
        "--scratch-dsn",
        pg_default.dsn,
        "--backup-dir",
        str(tmp_path / "backups"),
        "-q",
        *APP_FLAGS,
    )
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert KEY_ENV in proc.stderr and "does not decrypt" in proc.stderr
    assert catalog_state(enc_db) == before
    assert not (tmp_path / "backups").exists()
    _no_secret(proc.stdout, proc.stderr)
