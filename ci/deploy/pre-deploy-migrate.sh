#!/usr/bin/env bash
# Pre-deploy hook: plan -> migrate -> verify the LangGraph checkpoint tables of the
# real database, once, before the new app version starts. Any exit other than 0
# stops the deploy.
#
# Environment:
#   LANGGRAPH_MIGRATOR_DSN          (required) the app's database, as a role that may
#                                   run DDL on the checkpoint tables (the migrator
#                                   role). Read by langgraph-migrator itself: it is
#                                   never put on a command line and never printed.
#   LANGGRAPH_MIGRATOR_TO           version set being deployed (default: current,
#                                   the langgraph installed next to the tool).
#   LANGGRAPH_MIGRATOR_SCRATCH_DSN  a server for plan's rehearsal (default: an
#                                   ephemeral local cluster).
#   MIGRATOR_REPORT_DIR             where the JSON/JUnit reports go
#                                   (default: ./migrator-reports).
#   MIGRATOR_REQUIRE_GOLDENS        1: fail when no canary was ever seeded in the
#                                   database (default 0: skip verify with a warning).
#   MIGRATOR_WAIT                   seconds to wait for another migrator's lock
#                                   (default 60).
#
# Exit codes are langgraph-migrator's: 1 unsafe plan or drift, 2 usage, 3 database
# or environment, 4 another migrator holds the lock (safe to retry), 5 migration
# failed and was rolled back, 70 a bug in the tool.
set -euo pipefail

BIN="${LANGGRAPH_MIGRATOR_BIN:-langgraph-migrator}"
TO="${LANGGRAPH_MIGRATOR_TO:-current}"
REPORTS="${MIGRATOR_REPORT_DIR:-./migrator-reports}"
WAIT="${MIGRATOR_WAIT:-60}"
REQUIRE_GOLDENS="${MIGRATOR_REQUIRE_GOLDENS:-0}"

log() { printf 'pre-deploy-migrate: %s\n' "$*" >&2; }

# explain STEP CODE: one clear line per exit code, then stop the deploy.
explain() {
    local step="$1" code="$2" what
    case "$code" in
        1) what="the gate failed: ${step} found an unsafe plan or breaking drift; nothing was deployed. Read the report above (docs/runbook.md: 'the gate failed')" ;;
        2) what="usage or configuration error in ${step}: fix the flags or environment; nothing was changed" ;;
        3) what="database or environment error in ${step}: the database, the Postgres binaries or a version environment is unreachable; check the DSN, network and role, then retry" ;;
        4) what="another migrator holds the lock (or a lock was busy) during ${step}: nothing was changed; this is safe to retry once the other run finishes" ;;
        5) what="${step} failed and was rolled back: the database is as before the migration; do NOT start the new version (docs/runbook.md: 'migrate exited 5')" ;;
        70) what="a bug in langgraph-migrator during ${step}: keep the output above and report it; rerun with --raiseerr for the traceback" ;;
        *) what="${step} exited ${code}" ;;
    esac
    log "DEPLOY STOPPED (exit ${code}): ${what}"
    exit "$code"
}

# run STEP ARGS...: run one langgraph-migrator command; stop the deploy when it fails.
run() {
    local step="$1" code=0
    shift
    log "step ${step}: langgraph-migrator $*"
    "$BIN" "$@" || code=$?
    if [ "$code" -ne 0 ]; then
        explain "$step" "$code"
    fi
}

if [ -z "${LANGGRAPH_MIGRATOR_DSN:-}" ]; then
    log "DEPLOY STOPPED (exit 2): LANGGRAPH_MIGRATOR_DSN is not set (the app's database, as the migrator role)"
    exit 2
fi
if ! command -v "$BIN" >/dev/null 2>&1; then
    log "DEPLOY STOPPED (exit 3): ${BIN} is not on PATH (pip install langgraph-migrator in the deploy image)"
    exit 3
fi
export LANGGRAPH_MIGRATOR_DSN
mkdir -p "$REPORTS"

# 1. plan (read only): stops on an unsafe plan before anything changes.
run plan plan --to "$TO"

# 2. migrate: advisory lock, setup() of the target, repair, record the run.
run migrate migrate --to "$TO" --wait "$WAIT" --json "$REPORTS/migrate.json"

# 3. verify the canary threads against their goldens, when any were seeded.
code=0
seeded="$("$BIN" canary list --json)" || code=$?
if [ "$code" -ne 0 ]; then
    explain "canary list" "$code"
fi
if printf '%s' "$seeded" | tr -d ' \n' | grep -q '"seeded":\[\]'; then
    if [ "$REQUIRE_GOLDENS" = "1" ]; then
        log "DEPLOY STOPPED (exit 1): no canary was seeded in this database, and MIGRATOR_REQUIRE_GOLDENS=1; run 'langgraph-migrator canary seed --with SPEC' with the version the app runs today"
        exit 1
    fi
    log "WARNING: verify skipped: no canary was seeded in this database (seed once with 'langgraph-migrator canary seed --with SPEC' before the next upgrade)"
else
    run verify verify --with "$TO" --json "$REPORTS/verify.json" --junit "$REPORTS/verify.xml"
fi

log "done: the checkpoint tables match ${TO}; the deploy may proceed"
