"""The report value types: a ``Report`` is a list of ``Check`` results.

Each check is tri-state-plus-warning: ``pass``, ``fail`` (breaks the gate), ``warn``
(a deploy constraint the team must know, e.g. the migration must finish before new
pods serve) or ``skip``. The JSON shape is documented in ``docs/report-format.md``.

A check keeps the values of its differences (``old``, ``new``, ``summary_values``)
so that ``--show-values`` can show them; every rendering goes through
:meth:`Check.shown_differences` (:func:`migrator.values.redact_difference`), which
withholds them unless ``show_values`` is passed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from migrator.values import redact_difference

Status = Literal["pass", "fail", "warn", "skip"]

REPORT_FORMAT = "langgraph-migrator/report@1"


@dataclass(frozen=True)
class Check:
    """One verdict: a check (``drift``, ``resume``, ...) on one canary or thread, or global."""

    check: str
    status: Status
    summary: str
    canary: str | None = None
    thread_id: str | None = None
    hazards: tuple[str, ...] = ()
    differences: tuple[Mapping[str, Any], ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """``check[canary]``: the JUnit test case name."""
        target = self.canary or self.thread_id
        return f"{self.check}[{target}]" if target else self.check

    def shown_differences(self, show_values: bool = False) -> list[dict[str, Any]]:
        """The differences as a report may show them: values only with ``show_values``."""
        return [redact_difference(d, show_values) for d in self.differences]

    def to_dict(self, show_values: bool = False) -> dict[str, Any]:
        """JSON-ready dict (see docs/report-format.md); values only with ``show_values``."""
        return {
            "check": self.check,
            "name": self.name,
            "status": self.status,
            "summary": self.summary,
            "canary": self.canary,
            "thread_id": self.thread_id,
            "hazards": list(self.hazards),
            "differences": self.shown_differences(show_values),
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class Report:
    """The outcome of one command run."""

    command: str
    checks: tuple[Check, ...]
    versions: Mapping[str, Any] = field(default_factory=dict)
    server: Mapping[str, Any] = field(default_factory=dict)
    timings: Mapping[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def verdict(self) -> Literal["pass", "fail"]:
        """``fail`` when any check failed; warnings do not fail the gate."""
        return "fail" if any(c.status == "fail" for c in self.checks) else "pass"

    @property
    def hazards(self) -> list[str]:
        """Hazard ids seen in any non-passing check, sorted."""
        return sorted({h for c in self.checks if c.status != "pass" for h in c.hazards})

    def counts(self) -> dict[str, int]:
        """Number of checks per status, and breaking/benign difference counts."""
        out = {s: 0 for s in ("pass", "fail", "warn", "skip")}
        for c in self.checks:
            out[c.status] += 1
        diffs = [d for c in self.checks for d in c.differences]
        out["breaking"] = sum(1 for d in diffs if d.get("severity") == "breaking")
        out["benign"] = sum(1 for d in diffs if d.get("severity") == "benign")
        return out

    def breaking_text(self) -> str:
        """``N breaking / M benign differences``, saying how many breaking ones no longer fail.

        After a cure (the fallback) or an accepted hazard, the in-place differences stay
        in the report as evidence, in checks that are warnings now: "PASS … 44 breaking"
        alone read like a contradiction.
        """
        counts = self.counts()
        settled = sum(
            1
            for c in self.checks
            if c.status != "fail"
            for d in c.differences
            if d.get("severity") == "breaking"
        )
        text = f"{counts['breaking']} breaking / {counts['benign']} benign differences"
        if settled:
            text += f" ({settled} breaking in checks that no longer fail: cured or accepted)"
        return text

    def to_dict(self, show_values: bool = False) -> dict[str, Any]:
        """JSON-ready dict (see docs/report-format.md); values only with ``show_values``."""
        return {
            "format": REPORT_FORMAT,
            "command": self.command,
            "verdict": self.verdict,
            "counts": self.counts(),
            "hazards": self.hazards,
            "versions": dict(self.versions),
            "server": dict(self.server),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "notes": list(self.notes),
            "checks": [c.to_dict(show_values) for c in self.checks],
        }


#: Exit codes from least to most severe: the order in which one target's result
#: outweighs another's in a multi-target run (docs/report-format.md). A target that
#: could not be checked (environment 3, configuration 2) outweighs a failed verdict:
#: the run did not answer for it at all.
EXIT_SEVERITY = (0, 1, 4, 5, 3, 2, 70)


def worst_exit_code(codes: list[int]) -> int:
    """The most severe of ``codes`` by :data:`EXIT_SEVERITY` (0 for none)."""
    rank = {code: i for i, code in enumerate(EXIT_SEVERITY)}
    return max(codes, key=lambda c: rank.get(c, len(EXIT_SEVERITY)), default=0)


@dataclass(frozen=True)
class TargetResult:
    """One ``--to`` target of a multi-target ``upgrade-check``.

    Attributes:
        spec: The target as given on the command line (``current``, a spec, a file).
        label: What it pins for checkpoint-postgres / langgraph (read from the file).
        report: Its checks. A target that could not be checked holds one failing
            ``target`` check saying why.
        exit_code: 0 pass, 1 gate failed, or the exit code of the error that stopped it.
    """

    spec: str
    label: str
    report: Report
    exit_code: int

    def to_dict(self) -> dict[str, Any]:
        """The target's entry in the multi-target JSON report (its checks are top-level)."""
        return {
            "target": self.label,
            "spec": self.spec,
            "verdict": self.report.verdict,
            "exit_code": self.exit_code,
            "counts": self.report.counts(),
            "hazards": self.report.hazards,
            "versions": dict(self.report.versions),
            "timings": {k: round(v, 3) for k, v in self.report.timings.items()},
            "notes": list(self.report.notes),
        }


@dataclass(frozen=True)
class TargetsReport:
    """An ``upgrade-check`` with several ``--to`` targets: one seeding, one report per target.

    Its JSON is a ``report@1`` document whose top-level fields sum up every target
    (``verdict`` fails when any target does not pass; ``checks`` holds every target's
    checks, each tagged with its ``target``) plus a ``targets`` list.
    """

    command: str
    targets: tuple[TargetResult, ...]
    versions: Mapping[str, Any] = field(default_factory=dict)
    server: Mapping[str, Any] = field(default_factory=dict)
    timings: Mapping[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def verdict(self) -> Literal["pass", "fail"]:
        """``pass`` only when every target passed."""
        return "pass" if all(t.exit_code == 0 for t in self.targets) else "fail"

    @property
    def exit_code(self) -> int:
        """The worst target's exit code (:data:`EXIT_SEVERITY`)."""
        return worst_exit_code([t.exit_code for t in self.targets])

    @property
    def checks(self) -> tuple[Check, ...]:
        """Every target's checks, in target order."""
        return tuple(c for t in self.targets for c in t.report.checks)

    @property
    def hazards(self) -> list[str]:
        """Hazard ids any target reports, sorted."""
        return sorted({h for t in self.targets for h in t.report.hazards})

    def counts(self) -> dict[str, int]:
        """The targets' counts, summed."""
        out: dict[str, int] = {}
        for t in self.targets:
            for k, v in t.report.counts().items():
                out[k] = out.get(k, 0) + v
        return out or Report(self.command, ()).counts()

    def to_dict(self, show_values: bool = False) -> dict[str, Any]:
        """JSON-ready dict (docs/report-format.md, "Several targets")."""
        return {
            "format": REPORT_FORMAT,
            "command": self.command,
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "counts": self.counts(),
            "hazards": self.hazards,
            "versions": dict(self.versions),
            "server": dict(self.server),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "notes": list(self.notes),
            "checks": [
                {**c.to_dict(show_values), "target": t.label}
                for t in self.targets
                for c in t.report.checks
            ],
            "targets": [t.to_dict() for t in self.targets],
        }
