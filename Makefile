# Every target installs into .venv first when it is missing or stale, so `make run` and
# `make test` are the only two commands a fresh machine needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export BASTION_TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: install run test lint fmt bench screenshots clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,privacy]'
	touch $(STAMP)

# `bastion demo`: initialises ./.bastion if needed, sets up a governed demo release, drives a
# little traffic, prints a summary and keeps serving until Ctrl-C. E.g. ARGS="--scenario drift".
run: install
	$(BIN)/bastion demo $(ARGS)

# worksteal: an idle worker takes queued tests from the busy one, so the slow end-to-end tests
# do not leave one core waiting at the end (the whole suite: 567 s instead of 848 s here).
test: install
	$(BIN)/python -m pytest -n 2 --dist worksteal -q

# The README's dashboard screenshots, taken by the browser test (needs /usr/bin/chromium,
# Debian's `chromium`); a unit test fails when the pages change and these were not retaken.
screenshots: install
	BASTION_TEST_SCREENSHOTS=$(CURDIR)/docs/screenshots BASTION_REQUIRE_BROWSER=1 $(BIN)/python -m pytest -q tests/browser

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: install
	$(BIN)/python bench/auth.py
	$(BIN)/python bench/ledger.py
	$(BIN)/python bench/supplychain.py
	$(BIN)/python bench/policy.py
	$(BIN)/python bench/gateway.py
	$(BIN)/python bench/rollback.py
	$(BIN)/python bench/monitoring.py
	$(BIN)/python bench/monitoring_batch.py
	$(BIN)/python bench/privacy.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
