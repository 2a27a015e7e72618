"""Turning on strict msgpack safely (issue 14 parts 1 and 2; H-STRICT-MSGPACK).

orderbot's pydantic model, Enum and dataclass are seeded by a real old version
(checkpoint-postgres 3.0.1, a pair that upgrades cleanly to the newest). Read by
the newest under strict msgpack they degrade to dicts and raw values: the gate
fails naming each type. ``scan-types`` lists them and prints the allowlist; with
it, the same strict gate passes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from migrator import envs
from migrator.postgres import Server, scratch_database
from tests.integration.orderbot import run_orderbot

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

APP_DIR = Path(__file__).resolve().parents[1] / "apps" / "orderbot"
APP_SRC = APP_DIR / "src"
OLD = "langgraph-checkpoint-postgres==3.0.1"
APP_TYPES = ["orderbot.models.Order", "orderbot.models.Shipment", "orderbot.models.Status"]
THREADS = ["order-1", "order-2", "return-1"]


def _seed(dsn: str) -> None:
    run_orderbot(envs.ensure_env(envs.parse_version_set(OLD)), dsn)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from migrator.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=APP_DIR,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def app_db(pg_default: Server) -> Iterator[str]:
    with scratch_database(pg_default) as dsn:
        _seed(dsn)
        yield dsn


def _counts(dsn: str) -> tuple[int, ...]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM checkpoints), (SELECT count(*) FROM checkpoint_blobs),"
            " (SELECT count(*) FROM checkpoint_writes)"
        ).fetchone()
    assert row is not None
    return tuple(int(x) for x in row)


def _scan(dsn: str, *extra: str) -> dict[str, Any]:
    before = _counts(dsn)
    proc = _cli("scan-types", "--dsn", dsn, "--json", "-", "-q", *extra)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert _counts(dsn) == before  # read-only
    return dict(json.loads(proc.stdout))


def test_scan_types_lists_the_apps_types_and_the_allowlist(app_db: str) -> None:
    scan = _scan(app_db)
    by_type = {t["type"]: t for t in scan["types"]}
    for name in APP_TYPES:
        entry = by_type[name]
        assert entry["strict"] == "allowlist", entry
        assert entry["imports"] is True
        assert entry["count"] > 0 and entry["example_thread"] in THREADS
    assert by_type["orderbot.models.Order"]["kind"] == "pydantic v2"
    assert by_type["orderbot.models.Shipment"]["kind"] == "constructor(**kwargs)"
    assert by_type["orderbot.models.Status"]["kind"] == "constructor(arg)"
    assert scan["allowed_msgpack_modules"] == [n.rsplit(".", 1) for n in APP_TYPES]
    assert scan["undecodable"] == [] and scan["encrypted"] == {}
    assert scan["ok"] is True
    # two shards find the same
    sharded = _scan(app_db, "--jobs", "2")
    assert {t["type"]: t["count"] for t in sharded["types"]} == {
        t["type"]: t["count"] for t in scan["types"]
    }


def test_scan_types_without_the_apps_code_names_undecodable_values(
    app_db: str, tmp_path: Path
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from migrator.cli import main; main()"]
        + ["scan-types", "--dsn", app_db, "--json", "-", "-q"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # no pyproject: orderbot's code is unknown
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    scan = json.loads(proc.stdout)
    assert {u["type"] for u in scan["undecodable"]} >= set(APP_TYPES)


def _gate(dsn: str, tmp_path: Path, *flags: str) -> tuple[int, dict[str, Any], str]:
    out = tmp_path / f"gate{len(flags)}.json"
    threads = [a for t in THREADS for a in ("--thread", t)]
    proc = _cli(
        "upgrade-check",
        "--from",
        OLD,
        "--to",
        "current",
        "--pg",
        "local",
        "--threads-from",
        dsn,
        *threads,
        "--canary",
        "messages",
        "--fallback",
        "none",
        "--json",
        str(out),
        *flags,
    )
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.returncode, json.loads(out.read_text()), proc.stdout + proc.stderr


def test_strict_gate_fails_naming_each_type_then_passes_with_the_allowlist(
    app_db: str, tmp_path: Path
) -> None:
    code, report, output = _gate(app_db, tmp_path, "--strict-msgpack")
    assert code == 1, output[-4000:]
    verdict = [c for c in report["checks"] if c["check"] == "strict-msgpack"]
    assert len(verdict) == 1 and verdict[0]["status"] == "fail", verdict
    assert "H-STRICT-MSGPACK" in verdict[0]["hazards"]
    degraded = {t for ts in verdict[0]["details"]["degraded"].values() for t in ts}
    assert degraded == set(APP_TYPES), degraded
    drift = [c for c in report["checks"] if c["check"] == "drift" and c["status"] == "fail"]
    assert {c["thread_id"] for c in drift} == set(THREADS)
    for check in drift:
        assert "H-STRICT-MSGPACK" in check["hazards"]
        assert check["details"]["strict_degraded"]
        assert "strict msgpack degrades orderbot.models." in check["summary"]
    # the newest counts the blocked types per thread
    events = {k for c in drift for k in c["details"].get("serde_events", {})}
    assert any(k.startswith("msgpack_blocked:orderbot.models.") for k in events), events

    scan = _scan(app_db)
    flags = scan["allow_flags"].split()
    code, report, output = _gate(app_db, tmp_path, *flags)
    assert code == 0, output[-4000:]
    verdict = [c for c in report["checks"] if c["check"] == "strict-msgpack"]
    assert verdict and verdict[0]["status"] == "pass", verdict


def test_verify_strict_msgpack_names_the_rich_canarys_types(pg_default: Server) -> None:
    with scratch_database(pg_default) as dsn:
        envs.run_worker(envs.ensure_env(envs.parse_version_set("current")), "setup", {"dsn": dsn})
        proc = _cli("canary", "seed", "--dsn", dsn, "--with", "current", "--canary", "rich_values")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        plain = _cli("verify", "--dsn", dsn, "--json", "-", "-q")
        assert plain.returncode == 0, plain.stdout[-3000:] + plain.stderr[-3000:]
        strict = _cli("verify", "--dsn", dsn, "--strict-msgpack", "--json", "-", "-q")
    assert strict.returncode == 1, strict.stdout[-3000:] + strict.stderr[-3000:]
    report = json.loads(strict.stdout)
    (verdict,) = [c for c in report["checks"] if c["check"] == "strict-msgpack"]
    assert verdict["status"] == "fail"
    (failed,) = [c for c in report["checks"] if c["check"] == "verify"]
    assert failed["status"] == "fail" and "H-STRICT-MSGPACK" in failed["hazards"]
    assert failed["details"]["strict_degraded"], failed
    assert failed["details"]["serde_events"], failed


def test_scan_types_on_an_old_era_resolves_lc_ids_and_has_no_strict_mode(
    pg_default: Server,
) -> None:
    """checkpoint-postgres 1.0.9 keeps lc:1 envelopes (``langchain.schema.messages.*``,
    serializable ids, not import paths) in metadata: they load, nothing is undecodable."""
    spec = "langgraph-checkpoint-postgres==1.0.9"
    env = envs.ensure_env(envs.parse_version_set(spec))
    with scratch_database(pg_default) as dsn:
        envs.run_worker(env, "setup", {"dsn": dsn})
        envs.run_worker(env, "seed", {"dsn": dsn, "canaries": None, "user_canaries": None})
        scan = _scan(dsn, "--to", spec)
    kinds = {t["type"]: t for t in scan["types"]}
    lc = [t for t in scan["types"] if t["kind"].startswith("lc:1")]
    assert lc and all(t["imports"] for t in lc), lc
    assert "langchain.schema.messages.AIMessage" in kinds
    assert scan["undecodable"] == [] and scan["ok"] is True
    assert scan["strict_supported"] is False and scan["allowed_msgpack_modules"] == []
