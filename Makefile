# langgraph-migrator — every target creates the project virtualenv if missing and
# installs what it needs: nothing has to be installed by hand (no Docker either).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

# The embedded default: an old era upgraded to the version this tool runs on.
FROM ?= langgraph-checkpoint-postgres==2.0.25
TO   ?= current
PG   ?= local
REPORTS ?= reports
# pytest-xdist workers for `make test` / `make test-fast`: one per core, at most 4
# (each worker starts its own Postgres servers). TEST_JOBS=0 runs in one process.
TEST_JOBS ?= auto
PYTEST := $(BIN)/python -m pytest -n $(TEST_JOBS) --maxprocesses 4 --dist worksteal

.PHONY: install upgrade-check test test-fast test-reliability bench-load lint typecheck fixtures fixtures-check clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[test]'
	@sh ci/install-test-tools.sh
	@touch $(STAMP)

## The main job on the embedded default: ephemeral Postgres, real old -> new check.
upgrade-check: $(STAMP)
	@mkdir -p $(REPORTS)
	$(BIN)/langgraph-migrator upgrade-check --from '$(FROM)' --to '$(TO)' --pg $(PG) \
		--json $(REPORTS)/upgrade-check.json --junit $(REPORTS)/upgrade-check.xml

## The whole suite, slow tiers included (what CI runs).
test: $(STAMP)
	$(PYTEST)

## Pure and fast tests only.
test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

## kill -9 at each phase, server restarts, terminated connections (also part of `make test`).
test-reliability: $(STAMP)
	$(PYTEST) tests/reliability

## Write latency of 8 writers during migrate (in place, then the fallback) next to the
## same load without migrate, on an ephemeral local server (~2 minutes; bench/README.md).
bench-load: $(STAMP)
	$(BIN)/python bench/bench_load.py

lint: $(STAMP)
	$(BIN)/ruff check migrator tests
	$(BIN)/mypy

typecheck: lint

## Regenerate canary_fixtures/<era>/ with real old versions (never edit them by hand).
fixtures: $(STAMP)
	$(BIN)/python -m migrator.fixtures generate --out canary_fixtures

## Regenerate into a temp dir and compare with the committed fixtures by structure.
fixtures-check: $(STAMP)
	$(BIN)/python -m migrator.fixtures check --out canary_fixtures

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(REPORTS)
