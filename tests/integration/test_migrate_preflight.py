"""migrate's preflight on stored threads at risk: it asks before anything changes, and a
run that already decided is not stopped again (found by a new-user trial).

The 2.0.8 fixture holds two threads H-TASK-ID reaches and no golden.
"""

from __future__ import annotations

import pytest

from migrator import api
from migrator.errors import VerificationError
from migrator.execute import MigrateSettings, backup_hook
from migrator.postgres import scratch_database
from tests.integration.test_plan import catalog_state, load_era

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

FROM = "langgraph-checkpoint-postgres==2.0.8"


def test_the_prompt_comes_before_any_change_and_no_changes_nothing(pg_default, tmp_path):
    asked: list[str] = []
    with scratch_database(pg_default) as dsn:
        load_era(dsn, "2.0.8")
        before = catalog_state(dsn)
        outcome = api.migrate(
            MigrateSettings(dsn=dsn, scratch_dsn=pg_default.dsn, from_spec=FROM, fallback="ask"),
            backup=backup_hook(tmp_path / "b"),
            confirm=lambda question: asked.append(question) or False,
        )
        assert catalog_state(dsn) == before  # asked first: no setup(), no ledger, no backup
    assert len(asked) == 1
    assert asked[0].startswith("3 stored thread(s) are at risk (H-TASK-ID: 3 thread(s) (")
    assert "Migrate with the dump/restore fallback" in asked[0]
    assert isinstance(outcome.error, VerificationError) and outcome.error.exit_code == 1
    assert outcome.report.verdict == "fail"
    assert not (tmp_path / "b").exists()


def test_a_second_migrate_after_an_accepted_one_is_not_stopped_again(pg_default):
    with scratch_database(pg_default) as dsn:
        load_era(dsn, "2.0.8")
        first = api.migrate(
            MigrateSettings(dsn=dsn, scratch_dsn=pg_default.dsn, accept_hazards=("H-TASK-ID",))
        )
        assert first.error is None, first.error
        # The deploy hook runs migrate on every deploy: the same threads are still there.
        again = api.migrate(MigrateSettings(dsn=dsn, scratch_dsn=pg_default.dsn))
        assert again.error is None, again.error
        assert any("were decided by migrate run #" in n for n in again.report.notes)
        # Another target is another decision.
        other = api.migrate(
            MigrateSettings(
                dsn=dsn, scratch_dsn=pg_default.dsn, to_spec="langgraph-checkpoint-postgres==3.0.1"
            )
        )
    assert isinstance(other.error, VerificationError), other.report.notes
