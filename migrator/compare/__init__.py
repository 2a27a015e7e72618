"""Snapshot x Snapshot -> Diff: the drift between what two langgraph versions read.

Pure: no I/O, no langgraph import. Every difference carries a JSON-ish path that
addresses things by identity, not by list position, so one missing item is one
difference and not a cascade::

    threads["canary:messages"]
      .checkpoints[ns="",id="1ef..."]            checkpoints by (checkpoint_ns, checkpoint_id)
      .channel_values.messages[2].fields.content  values: .key / ["odd key"] / [index]
      .pending_writes[task_id="...",channel="x"]  pending writes by (task_id, channel[, i])
      .state.tasks[name="agent",i=1]              tasks by name (+ index among that name)
      .history[id="1ef..."]                       history entries by checkpoint id
    resume.threads["t"].trace[node="tools"]       resume comparisons

Classification of each difference, in order (the rules live in ``rules.py``; their
names are re-exported here):

1. hazard attribution (``rules.attribute_hazard``): a recognised pattern of a catalogued
   hazard (``HAZARDS.md``) is breaking and names the hazard id;
2. built-in benign rules (``rules.BENIGN_RULES``): documented or observed format
   evolutions between released versions, each limited to an old and a new
   version range; applied only when no hazard was attributed;
3. the user's ``Policy`` (ignore / benign / hazards_ignore), which may override both;
4. everything else is breaking.

Then, per thread, follow-on differences in derived views (``state``/``history``
values and next, a resume's outcome/next/digest) that carry no hazard inherit the
one hazard that caused them (``_consequences``); a resume that failed with a
catalogued error, or lost its ``Send`` fan-out, attributes the work not done to it.
"""

from __future__ import annotations

from migrator.compare.classify import compare_snapshots, reclassify
from migrator.compare.model import DIFF_FORMAT, SNAPSHOT_FORMAT, Diff, Difference, Severity
from migrator.compare.resume import TraceKey, compare_resumes
from migrator.compare.valuediff import diff_values
from migrator.rules import (
    BENIGN_RULES,
    BenignRule,
    Context,
    Predicate,
    VersionRange,
    attribute_hazard,
    crosses_task_id_boundary,
    hazard_for_error,
    parse_version,
)
from migrator.values import canonical_json, short_hash, type_tag

__all__ = [
    "BENIGN_RULES",
    "DIFF_FORMAT",
    "SNAPSHOT_FORMAT",
    "BenignRule",
    "Context",
    "Diff",
    "Difference",
    "Predicate",
    "Severity",
    "TraceKey",
    "VersionRange",
    "attribute_hazard",
    "canonical_json",
    "compare_resumes",
    "compare_snapshots",
    "crosses_task_id_boundary",
    "diff_values",
    "hazard_for_error",
    "parse_version",
    "reclassify",
    "short_hash",
    "type_tag",
]
