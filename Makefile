# Haven — developer commands. `make demo` runs the app with demo data; `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
FLASK  := $(BIN)/flask --app app
PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/postgres
DEMO_HOST ?= 127.0.0.1
DEMO_PORT ?= 5000

.PHONY: demo run test coverage-erase test-sqlite test-postgresql test-tools lint bench bench-tools soak translations deps clean lock audit-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Every package pinned with its hashes (pip-tools, `make lock`): pip refuses anything else.
# pip itself first, at the version the lock pins (with its hashes): older pips (23.2, the
# default of a new venv here) refuse a hash-pinned lock whose packages ask for extras.
$(VENV)/.deps: requirements.txt tests/requirements.txt | $(BIN)/python
	sed -n '/^pip==/,/^[^ ]/p' tests/requirements.txt | sed '$$d' > $(VENV)/pip-lock.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r $(VENV)/pip-lock.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r tests/requirements.txt
	touch $@

deps: $(VENV)/.deps

.env: | $(VENV)/.deps
	$(BIN)/python -m app.core.devenv .env

# Compiled catalogs are build output (not committed).
translations-compile: $(VENV)/.deps
	$(BIN)/pybabel compile -d translations -D messages

## Install, migrate a SQLite database, load demo data and serve on http://127.0.0.1:5000
## (DEMO_HOST / DEMO_PORT to change it). `db upgrade` makes instance/ itself, private (0700).
demo: $(VENV)/.deps .env translations-compile
	$(FLASK) db upgrade
	HAVEN_DEMO_URL=http://$(DEMO_HOST):$(DEMO_PORT) $(FLASK) seed-demo
	$(FLASK) run --host $(DEMO_HOST) --port $(DEMO_PORT)

run: $(VENV)/.deps .env translations-compile
	$(FLASK) run --host $(DEMO_HOST) --port $(DEMO_PORT)

## Every test: those marked both_databases on SQLite, then every test on PostgreSQL (each on a
## fresh database); line coverage of app/ over both runs, under 90 % fails
test: coverage-erase test-sqlite test-postgresql
	$(BIN)/coverage report --fail-under=$(COVERAGE_FLOOR)

# What the tests drive besides Python: Debian's Chromium (browser tests), axe-core and the
# Prism mock of Twilio's API (npm, into the git-ignored .tools/). Each step is idempotent.
test-tools:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
	tests/tools/install_axe.sh
	tests/tools/install_prism.sh

COVERAGE_FLOOR := 90
PYTEST := $(BIN)/pytest -q -p no:cacheprovider -n 2 -rs --cov=app --cov-append --cov-report=

coverage-erase: $(VENV)/.deps
	$(BIN)/coverage erase

# The behaviour that differs between the databases (pyproject's both_databases marker) runs
# on SQLite too; everything else, the browser journeys included, once, on PostgreSQL.
test-sqlite: $(VENV)/.deps translations-compile test-tools
	HAVEN_TEST_DATABASE=sqlite $(PYTEST) -m both_databases

test-postgresql: $(VENV)/.deps translations-compile test-tools
	HAVEN_TEST_DATABASE=postgresql HAVEN_TEST_PG_URL=$(PG_URL) $(PYTEST)

## Compile requirements.txt and tests/requirements.txt from the .in files (pins + hashes)
PIP_COMPILE := $(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links
lock: $(VENV)/.deps
	$(PIP_COMPILE) --output-file=requirements.txt requirements.in
	cd tests && ../$(PIP_COMPILE) --output-file=requirements.txt requirements.in

## Known vulnerabilities in the pinned packages (pip-audit; fails when one is found)
audit-deps: $(VENV)/.deps
	$(BIN)/python tests/tools/audit_deps.py

lint: $(VENV)/.deps
	$(BIN)/ruff check app config.py tests bench
	$(BIN)/mypy

## Benchmarks (DESIGN §8): each prints its figures, the floors measured in the same run, the
## ratios and one verdict per budget. Over budget fails only with BENCH_STRICT=1; a broken
## measurement always fails. BENCH=matching|sms_inbound|retention runs one;
## BENCH_COMPARE=REV also measures the tree of git revision REV, in the same run, and prints
## each figure before and after; BENCH_ARGS is passed to each (e.g. --backends postgresql).
BENCH ?= *
bench: $(VENV)/.deps translations-compile bench-tools
	@for b in bench/bench_$(BENCH).py; do \
	  mod=$$(echo $$b | sed 's#/#.#; s#\.py$$##'); echo "== $$mod"; \
	  $(BIN)/python -m $$mod $(if $(BENCH_COMPARE),--compare $(BENCH_COMPARE)) \
	    $(if $(BENCH_STRICT),--strict) $(BENCH_ARGS) || exit 1; done

# The SMS benchmark's load generator is C (bench/loadgen.c), built with gcc at each run.
bench-tools:
	@command -v gcc >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev)

## Many instances of Haven on one scratch PostgreSQL database for SOAK_ARGS (default 60 s of
## traffic): no 5xx, every message sent once, no overbooked bed, audit chain intact
soak: $(VENV)/.deps translations-compile
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

## Extract, update and compile the gettext catalogs
translations: $(VENV)/.deps
	$(BIN)/pybabel extract -F translations/babel.cfg -k _l -k lazy_gettext -k ngettext:1,2 -k lazy_ngettext:1,2 -o translations/messages.pot --no-location --omit-header --sort-output .
	$(BIN)/pybabel update -i translations/messages.pot -d translations -D messages --ignore-obsolete
	$(BIN)/pybabel compile -d translations -D messages

clean:
	rm -rf $(VENV) instance .pytest_cache .mypy_cache .ruff_cache
