"""``upgrade-check --accept-hazard``: what an accepted hazard changes, and what it does not."""

from __future__ import annotations

from migrator.gate.checks import accept_hazards
from migrator.policy import Policy
from migrator.report import Check


def test_an_accepted_hazards_differences_are_ignored_naming_the_flag():
    policy = Policy(hazards_ignore=("H-STRICT-MSGPACK",), accepted=("H-METADATA-WRITES",))
    assert policy.classify("x.metadata.writes", "H-METADATA-WRITES") == (
        "ignored",
        "accepted:H-METADATA-WRITES (--accept-hazard)",
    )
    assert policy.classify("x", "H-STRICT-MSGPACK") == (
        "ignored",
        "policy:hazards_ignore:H-STRICT-MSGPACK",
    )
    assert policy.classify("x", "H-TASK-ID") is None
    assert not Policy(accepted=("H-TASK-ID",)).empty


def test_a_check_fails_on_unless_every_hazard_it_names_is_accepted():
    checks = [
        Check("drift", "fail", "2 breaking", canary="a", hazards=("H-METADATA-WRITES",)),
        Check(
            "drift", "fail", "3 breaking", canary="b", hazards=("H-METADATA-WRITES", "H-TASK-ID")
        ),
        Check("resume", "fail", "no hazard named", canary="c"),
        Check("drift", "pass", "clean", canary="d", hazards=("H-METADATA-WRITES",)),
    ]
    out = accept_hazards(checks, ("H-METADATA-WRITES",))
    assert [c.status for c in out] == ["warn", "fail", "fail", "pass"]
    assert out[0].summary == "2 breaking (accepted: --accept-hazard H-METADATA-WRITES)"


def test_a_fallback_that_drops_metadata_writes_says_so_instead_of_cured():
    from migrator.gate.fallback import _dropped

    assert _dropped(("H-TASK-ID",)) == ""
    said = _dropped(("H-METADATA-WRITES", "H-TASK-ID"))
    assert "metadata.writes is dropped, not rebuilt" in said
