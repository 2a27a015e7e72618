"""The pytest plugin, as an app team uses it: its own canary module, its own test file.

Each test builds a throwaway project with ``pytester`` and runs pytest on it in a
subprocess (the plugin is loaded from the ``pytest11`` entry point, as after
``pip install langgraph-migrator``), against a real old version and real Postgres.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

OLD = "langgraph-checkpoint-postgres==2.0.8"

CANARY_MODULE = '''
"""Two nodes, paused between them: the shape of an approval flow."""
import operator
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph

from migrator.worker import trace


class State(TypedDict):
    log: Annotated[list, operator.add]


class TwoStep:
    name = "two_step"
    resumable = True
    fail_on_new_langgraph = False

    def build(self, checkpointer):
        def first(state, config):
            trace.hit(self.name, "first", config)
            return {"log": ["first"]}

        def second(state, config):
            trace.hit(self.name, "second", config)
            return {"log": ["second"]}

        graph = StateGraph(State)
        graph.add_node("first", first)
        graph.add_node("second", second)
        graph.add_edge(START, "first")
        graph.add_edge("first", "second")
        graph.add_edge("second", END)
        return graph.compile(checkpointer=checkpointer, interrupt_before=["second"])

    def seed(self, graph, config):
        graph.invoke({"log": ["start"]}, config)

    def resume(self, graph, config):
        if self.fail_on_new_langgraph:
            from importlib.metadata import version

            if not version("langgraph").startswith("0."):
                # The app's own code path that breaks on langgraph 1.x.
                raise RuntimeError("approval step not compatible with this langgraph")
        graph.invoke(None, config)


class BreaksOnNew(TwoStep):
    name = "breaks_on_new"
    fail_on_new_langgraph = True


CANARIES = [TwoStep()]
BREAKING = [BreaksOnNew()]
'''

SAFE_TESTS = f'''
import pytest

from migrator.pytest_plugin import assert_upgrade_safe

OLD = "{OLD}"


@pytest.mark.postgres_major({{major}})
def test_server_has_the_major(versioned_postgres):
    assert versioned_postgres.major == {{major}}


@pytest.mark.postgres_major({{major}})
@pytest.mark.langgraph_upgrade(from_=OLD, canaries="appcanaries:CANARIES", canary="two_step")
def test_seeded_thread_survives_upgrade(seeded_thread):
    assert [h["node"] for h in seeded_thread.trace] == ["first"]
    diff = seeded_thread.upgrade("current")
    assert not diff.breaking, [d.summary() for d in diff.breaking]
    outcome = seeded_thread.resume("current")
    assert outcome["outcome"] == "completed", outcome
    assert [h["node"] for h in outcome["trace"]] == ["second"]


@pytest.mark.postgres_major({{major}})
def test_gate_passes_for_my_canaries(versioned_postgres):
    report = assert_upgrade_safe(OLD, canaries="appcanaries:CANARIES", pg=versioned_postgres)
    # the gate-wide checks (setup, in-place) have no canary
    assert {{{{c.canary for c in report.checks}}}} - {{{{None}}}} == {{{{"two_step"}}}}
'''

BREAKING_TEST = f'''
from migrator.pytest_plugin import assert_upgrade_safe


def test_gate_catches_my_breaking_canary(versioned_postgres):
    assert_upgrade_safe("{OLD}", canaries="appcanaries:BREAKING", pg=versioned_postgres)
'''


@pytest.fixture
def project(pytester, pg_default):
    pytester.makepyfile(appcanaries=CANARY_MODULE)
    # The app's tests use the session's server through --lgm-pg (a DSN): no second cluster.
    return pytester


def _run(pytester, pg_default, *extra):
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-v", "--lgm-pg", pg_default.dsn, *extra, timeout=900
    )


@pytest.mark.slow
def test_app_suite_passes_on_a_safe_upgrade(project, pg_default):
    project.makepyfile(test_app=SAFE_TESTS.format(major=pg_default.major))
    result = _run(project, pg_default)
    result.assert_outcomes(passed=3)


@pytest.mark.slow
def test_app_suite_fails_readably_when_its_canary_breaks(project, pg_default):
    project.makepyfile(test_app=BREAKING_TEST)
    result = _run(project, pg_default)
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert f"upgrade {OLD} -> current is not safe" in text
    assert "FAIL resume[breaks_on_new]" in text
    assert "approval step not compatible with this langgraph" in text


@pytest.mark.slow
def test_other_major_on_a_given_server_is_skipped_with_reason(project, pg_default):
    other = 14 if pg_default.major != 14 else 15
    project.makepyfile(
        test_app=f"""
import pytest

@pytest.mark.postgres_major({other})
def test_other(versioned_postgres):
    pass
"""
    )
    result = _run(project, pg_default, "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([f"*Postgres {other} requested*{pg_default.major}*"])


def test_seeded_thread_without_marker_fails_with_instructions(project, pg_default):
    project.makepyfile(
        test_app="""
def test_x(seeded_thread):
    pass
"""
    )
    result = _run(project, pg_default)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*seeded_thread needs @pytest.mark.langgraph_upgrade*"])
