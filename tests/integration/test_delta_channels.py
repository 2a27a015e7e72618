"""Delta channels (issue 14 part 4; H-DELTA-ROLLBACK, H-DELTA-SEMANTICS).

The opt-in canary ``delta_messages`` keeps its messages in a ``DeltaChannel``
(a snapshot blob after 4 updates, deltas after it) and starts over once with
``RemoveMessage(REMOVE_ALL_MESSAGES)``. Real versions: the newest (1.2.24) and
1.2.23, whose delta reducer ignores REMOVE_ALL_MESSAGES.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from migrator import envs
from migrator.compare import compare_snapshots
from migrator.dumprestore import dump_threads
from migrator.postgres import Server, scratch_database
from migrator.serde.delta import delta_threads

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

THREAD = "canary:delta_messages"
SPEC_1_2_23 = "langgraph-checkpoint-postgres==3.2.0 langgraph==1.2.23 langgraph-prebuilt==1.1.3"


def _env(spec: str) -> envs.VersionEnv:
    return envs.ensure_env(envs.parse_version_set(spec))


def _seed(env: envs.VersionEnv, dsn: str) -> dict[str, Any]:
    envs.run_worker(env, "setup", {"dsn": dsn})
    return envs.run_worker(
        env, "seed", {"dsn": dsn, "canaries": ["delta_messages"], "user_canaries": None}
    )


def _snapshot(env: envs.VersionEnv, dsn: str) -> dict[str, Any]:
    request = {
        "dsn": dsn,
        "threads": [{"thread_id": THREAD, "canary": "delta_messages"}],
        "user_canaries": None,
    }
    return envs.run_worker(env, "snapshot", request)


def _messages(snapshot: dict[str, Any]) -> list[str]:
    state = snapshot["threads"][THREAD]["state"]
    return [m["fields"]["content"] for m in state["values"]["messages"]]


def test_delta_thread_is_found_and_round_trips_through_dump_restore(
    pg_default: Server, tmp_path: Path
) -> None:
    env = _env("current")
    with scratch_database(pg_default) as src, scratch_database(pg_default) as dst:
        seeded = _seed(env, src)
        assert seeded["threads"][0]["status"] == "seeded", seeded
        assert delta_threads(src) == [THREAD]
        before = _snapshot(env, src)
        texts = _messages(before)
        assert texts[0] == "start over: third question"  # 1.2.24 honours REMOVE_ALL
        assert len(texts) == 2
        with psycopg.connect(src) as conn:  # deltas between snapshot blobs
            n = conn.execute(
                "SELECT count(*) FROM checkpoints WHERE thread_id = %s", (THREAD,)
            ).fetchone()
        assert n is not None and n[0] >= 4
        out = tmp_path / "delta.lgdump"
        manifest = dump_threads(src, env, out)
        assert manifest.errors == ()
        proc = subprocess.run(
            [sys.executable, "-c", "from migrator.cli import main; main()"]
            + ["restore", "--dsn", dst, str(out), "-q"],
            capture_output=True,
            text=True,
            timeout=600,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert delta_threads(dst) == [THREAD]
        after = _snapshot(env, dst)
    diff = compare_snapshots(before, after)
    assert [d.summary() for d in diff.differences if d.severity == "breaking"] == []
    assert _messages(after) == texts


def test_drift_check_catches_delta_semantics_1_2_23_to_1_2_24(pg_default: Server) -> None:
    old, new = _env(SPEC_1_2_23), _env("current")
    with scratch_database(pg_default) as dsn:
        _seed(old, dsn)
        golden = _snapshot(old, dsn)
        assert golden["versions"]["langgraph"] == "1.2.23"
        now = _snapshot(new, dsn)
    assert "third question" in json.dumps(golden)
    assert _messages(golden) != _messages(now)  # identical rows, different values
    diff = compare_snapshots(golden, now)
    breaking = [d for d in diff.differences if d.severity == "breaking"]
    assert any(".state.values.messages" in d.path for d in breaking), [
        d.summary() for d in breaking
    ]


def test_gate_flags_a_target_that_cannot_read_delta_threads(
    pg_default: Server, tmp_path: Path
) -> None:
    """Rehearsing a rollback below 1.2: the target reads the delta thread as empty."""
    with scratch_database(pg_default) as src:
        _seed(_env("current"), src)
        out = tmp_path / "gate.json"
        proc = subprocess.run(
            [sys.executable, "-c", "from migrator.cli import main; main()"]
            + ["upgrade-check", "--from", "current", "--to", "langgraph-checkpoint-postgres==3.0.1"]
            + ["--pg", "local", "--threads-from", src, "--thread", THREAD]
            + ["--canary", "messages", "--fallback", "none", "--json", str(out)],
            capture_output=True,
            text=True,
            timeout=900,
            stdin=subprocess.DEVNULL,
        )
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert proc.returncode == 1, proc.stdout[-3000:]
    found = [c for c in report["checks"] if c["check"] == "delta-read"]
    assert len(found) == 1 and found[0]["status"] == "fail", found
    assert found[0]["details"]["threads"] == 1
    assert found[0]["details"]["thread_ids"] == [THREAD]
    assert "H-DELTA-ROLLBACK" in found[0]["hazards"]


def test_gate_names_delta_semantics_1_2_23_to_1_2_24(tmp_path: Path) -> None:
    out = tmp_path / "gate.json"
    proc = subprocess.run(
        [sys.executable, "-c", "from migrator.cli import main; main()"]
        + ["upgrade-check", "--from", SPEC_1_2_23, "--to", "current", "--pg", "local"]
        + ["--canary", "delta_messages", "--fallback", "none", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert proc.returncode == 1, proc.stdout[-3000:]
    drift = [c for c in report["checks"] if c["check"] == "drift" and c["status"] == "fail"]
    assert [c["canary"] for c in drift] == ["delta_messages"], drift
    assert "H-DELTA-SEMANTICS" in drift[0]["hazards"]
    # both sides read delta channels: no rollback finding
    assert not [c for c in report["checks"] if c["check"] == "delta-read"]
