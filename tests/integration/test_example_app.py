"""The example application ``tests/apps/orderbot`` seeds and resumes as designed.

orderbot is the "user's app the tool has never seen" (issue 11): its own state
types (pydantic model, Enum, dataclass), a graph with a failed node beside a
completed sibling, and a graph paused inside a subgraph. These tests pin down what
it leaves in the database under real old and new versions, and which nodes run
when a thread is resumed, so tests of the tool can rely on those shapes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from migrator import envs
from migrator.postgres import Server, scratch_database
from tests.integration.orderbot import run_orderbot

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

APP_SRC = Path(__file__).resolve().parents[1] / "apps" / "orderbot" / "src"
ERAS = ["2.0.8", "current"]


def _env(era: str) -> envs.VersionEnv:
    spec = era if era == "current" else f"langgraph-checkpoint-postgres=={era}"
    return envs.ensure_env(envs.parse_version_set(spec))


def _app(env: envs.VersionEnv, *args: str) -> dict[str, Any]:
    """Run ``python -m orderbot.seed ARGS`` in ``env``; its JSON summary."""
    return run_orderbot(env, *args)


def _resume(env: envs.VersionEnv, dsn: str, thread: str, tmp_path: Path) -> list[str]:
    """Resume ``thread`` in ``env``; the nodes its trace file recorded."""
    trace = tmp_path / f"resume-{env.python.parent.parent.name}-{thread}.trace"
    _app(env, "--resume", dsn, thread, str(trace))
    return trace.read_text().split() if trace.exists() else []


def _seed(env: envs.VersionEnv, dsn: str, tmp_path: Path) -> tuple[dict[str, Any], list[str]]:
    trace = tmp_path / "seed.trace"
    summary = _app(env, dsn, str(trace))
    return {t["thread_id"]: t for t in summary["threads"]}, trace.read_text().split()


def _assert_seeded(threads: dict[str, Any], trace: list[str], dsn: str) -> None:
    order_1, order_2, return_1 = threads["order-1"], threads["order-2"], threads["return-1"]
    # price and stock run in one superstep, in either order
    assert order_1["trace"][0] == "intake"
    assert sorted(order_1["trace"][1:]) == ["price", "stock"]
    assert order_1["failed"] == ["stock"] and order_1["next"] == ["stock"]
    assert order_2["next"] == [] and order_2["status"] == "shipped"
    assert return_1["trace"] == ["rma", "inspect"]
    assert return_1["next"] == ["refund_flow"] and return_1["status"] == "return_requested"
    assert sorted(trace) == sorted(order_1["trace"] + order_2["trace"] + return_1["trace"])

    with psycopg.connect(dsn) as conn:
        namespaces = {
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT checkpoint_ns FROM checkpoints WHERE thread_id = 'return-1'"
            )
        }
        latest = conn.execute(
            "SELECT max(checkpoint_id) FROM checkpoints"
            " WHERE thread_id = 'order-1' AND checkpoint_ns = ''"
        ).fetchone()
        assert latest is not None
        writes = conn.execute(
            "SELECT task_id, channel FROM checkpoint_writes"
            " WHERE thread_id = 'order-1' AND checkpoint_ns = '' AND checkpoint_id = %s",
            (latest[0],),
        ).fetchall()
        errors_2 = conn.execute(
            "SELECT count(*) FROM checkpoint_writes"
            " WHERE thread_id = 'order-2' AND channel = '__error__'"
        ).fetchone()
    assert "" in namespaces
    assert any(ns.startswith("refund_flow:") for ns in namespaces), namespaces
    by_channel = {channel: task for task, channel in writes}
    # the failed task's error and the completed sibling's writes, pending side by side
    assert "__error__" in by_channel and "total_cents" in by_channel, writes
    assert by_channel["__error__"] != by_channel["total_cents"]
    assert errors_2 == (0,)


@pytest.mark.parametrize("era", ERAS)
def test_seed_and_resume_in_one_version(era: str, pg_default: Server, tmp_path: Path) -> None:
    env = _env(era)
    with scratch_database(pg_default) as dsn:
        threads, trace = _seed(env, dsn, tmp_path)
        _assert_seeded(threads, trace, dsn)
        assert _resume(env, dsn, "order-1", tmp_path) == ["stock", "ship"]
        assert _resume(env, dsn, "return-1", tmp_path) == ["approve", "notify"]
        assert _resume(env, dsn, "order-2", tmp_path) == []


def test_old_threads_resumed_by_newest_rerun_completed_nodes(
    pg_default: Server, tmp_path: Path
) -> None:
    """H-TASK-ID, reproduced on the app: what the tool must catch, not what it should do."""
    from langgraph.checkpoint.postgres import PostgresSaver

    old, new = _env("2.0.8"), _env("current")
    with scratch_database(pg_default) as dsn:
        _seed(old, dsn, tmp_path)
        with PostgresSaver.from_conn_string(dsn) as saver:
            saver.setup()
        # price ran during the seed, and runs again; the child restarts and pauses again
        rerun = _resume(new, dsn, "order-1", tmp_path)
        assert sorted(rerun[:2]) == ["price", "stock"] and rerun[2:] == ["ship"], rerun
        assert _resume(new, dsn, "return-1", tmp_path) == ["inspect"]
