# The two commands: `make run` (the whole product) and `make test` (the whole suite). See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python

.PHONY: run test bench chaos install install-dev lint format migrations schema key services clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Reinstall only when the requirement files change.
$(VENV)/.installed: requirements.txt | $(BIN)/activate
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(BIN)/activate
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## run: install, create and migrate the database, print the demo login, start web + workers + beat
run: install
	$(PY) manage.py ensure_database
	$(PY) manage.py migrate --no-input
	$(PY) manage.py demo_setup
	@echo "Open http://127.0.0.1:$${WEB_PORT:-8000}/ (agents' inbox) or /admin/ (operations); Ctrl-C stops everything"
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start

## test: install test dependencies, lint, check migrations, run the whole suite against PostgreSQL and Redis
test: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DJANGO_SETTINGS_MODULE=config.settings.test $(PY) manage.py makemigrations --check --dry-run
	$(BIN)/pytest $(PYTEST_ARGS)

## bench: every benchmark in bench/ against the real stack (own database and Redis db); one summary table
bench: install
	$(PY) bench/run.py $(BENCH_ARGS)

## chaos: fault scenarios (kills, server restarts, duplicates, hostile bodies) on servers of its own; one table
chaos: install-dev
	$(PY) bench/chaos.py $(CHAOS_ARGS)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

migrations: install
	$(PY) manage.py makemigrations

## schema: write the REST API's OpenAPI schema to docs/openapi.yaml (a test fails while it is out of date)
schema: install
	DJANGO_SETTINGS_MODULE=config.settings.test $(PY) manage.py spectacular --validate --fail-on-warn --file docs/openapi.yaml

## key: print a new Fernet key for TOKEN_ENCRYPTION_KEY
key: install
	@$(PY) -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache
