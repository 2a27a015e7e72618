"""The plan as text for people (pure)."""

from __future__ import annotations

from migrator.plan.blast import FLAG_TEXT
from migrator.plan.hazards import _ledger_text
from migrator.plan.model import Plan


def _one_line(statement: str, limit: int = 110) -> str:
    text = " ".join(statement.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def render_plan(plan: Plan, *, full_sql: bool = False) -> list[str]:
    """The plan as lines of text for people (pure).

    Args:
        plan: The plan.
        full_sql: Print statements in full instead of one shortened line each.

    Returns:
        Lines, without trailing newlines.
    """
    lines = [
        f"plan: {plan.database} (schema {plan.schema}, Postgres {plan.server_version}, "
        f"{_ledger_text(plan.ledger)})",
        f"  -> {plan.target}",
    ]
    pending = plan.pending
    lines.append(
        f"setup() will run {len(pending)} pending statement(s)"
        + (" after MIGRATIONS[0], which it runs on every call:" if plan.steps else ":")
    )
    for s in plan.steps:
        tag = "v?" if s.v is None else f"v{s.v}"
        mark = {"ok": "ok", "fails": "FAILS", "not_rehearsed": "?"}[s.outcome]
        text = s.sql.strip() if full_sql else _one_line(s.sql) or "(empty statement)"
        extra = " [always]" if s.always else ""
        extra += "" if s.transactional else " [non-transactional]"
        lines.append(f"  {tag:>4} {mark:<5} {text}{extra}")
        if s.error:
            lines.append(f"             {s.error_kind}: {s.error}")
    if plan.rehearsal_diff:
        lines.append("after the rehearsed setup(), the schema differs from the reference:")
        lines += [f"  {d.summary()}" for d in plan.rehearsal_diff]
    else:
        lines.append("after the rehearsed setup(), the schema equals the reference.")
    if plan.repairs:
        lines.append("repairs migrate will apply after setup():")
        for r in plan.repairs:
            lines += [f"  {_one_line(s) if not full_sql else s};" for s in r.sql]
    if plan.data is not None:
        lines += _data_lines(plan)
    if plan.hazards:
        lines.append("hazards:")
        for h in plan.hazards:
            lines.append(f"  {h.severity.upper():<7} {h.id}: {h.message}")
            lines.append(f"          fix: {h.fix}")
    lines += [f"note: {n}" for n in plan.notes]
    if plan.unsafe:
        errors = [h for h in plan.hazards if h.severity == "error"]
        schema = [h for h in errors if not h.data]
        data = [h for h in errors if h.data]
        why = []
        if schema:
            handled = not plan.blocking
            why.append(
                "plain setup() would fail or lose data"
                + ("; `migrate` handles every schema error above" if handled else "")
            )
        if data:
            reached = plan.data.at_risk if plan.data else 0
            why.append(
                f"the target breaks {reached} stored thread(s) "
                f"({', '.join(sorted({h.id for h in data}))})"
            )
        tail = "" if not plan.blocking else "; fix the blocking errors first"
        lines.append("verdict: UNSAFE — " + "; ".join(why) + tail + ".")
    else:
        lines.append("verdict: SAFE")
    return lines


def _data_lines(plan: Plan) -> list[str]:
    data = plan.data
    assert data is not None
    lines = [f"stored threads: {data.era_text()} (scanned in {data.seconds:.2f}s)"]
    if data.at_risk:
        lines.append(f"  {data.at_risk} thread(s) at risk on the target")
    counts = data.to_dict()["counts"]
    shown = [f"{n} {FLAG_TEXT[flag]}" for flag, n in counts.items() if n]
    if shown:
        lines.append("  " + "; ".join(shown))
    if data.reaches:
        lines.append("data hazards that apply to the target:")
        for r in data.reaches:
            tag = "breaking" if r.breaking else "warning"
            lines.append(f"  {r.hazard} ({tag}): {r.threads} thread(s) {r.what}")
            if r.thread_ids:
                lines.append(f"    first {len(r.thread_ids)}: {', '.join(r.thread_ids)}")
    else:
        lines.append("no data hazard applies to the target.")
    return lines
