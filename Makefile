# SigSentry — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install install-dev lint format bench load load-scale clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e ".[dev]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## make run: install, migrate the SQLite default, seed the demo, serve on http://$(HOST):$(PORT)
## with one worker beside the web server
# Links in the demo's emails and output point at this server unless SITE_URL says otherwise.
run: export SITE_URL ?= http://$(HOST):$(PORT)
run: install
	DEBUG=true $(PY) manage.py migrate --noinput
	DEBUG=true $(PY) manage.py seed_demo
	@echo ""
	@echo "  SigSentry is running at http://$(HOST):$(PORT)/  (admin: http://$(HOST):$(PORT)/admin/)"
	@echo ""
	@# One worker (webhook deliveries, emails, scheduled checks) beside the web server.
	@# Ctrl+C reaches both (the worker finishes its task); if the server stops by itself,
	@# the worker gets one SIGTERM (a second signal would cut its task short).
	DEBUG=true HTTPS_ONLY=false WEBHOOKS_ALLOW_PRIVATE=$${WEBHOOKS_ALLOW_PRIVATE:-true} sh -c '\
		$(PY) manage.py run_worker & worker=$$!; \
		trap "interrupted=1" INT; \
		trap "[ -n \"\$$interrupted\" ] || kill -TERM $$worker 2>/dev/null; wait $$worker" EXIT; \
		$(VENV)/bin/gunicorn sigsentry.wsgi:application \
			--bind $(HOST):$(PORT) --workers 2'

## make test: install with the dev extra and run the whole suite (PostgreSQL when DATABASE_URL names one)
test: install-dev
	$(VENV)/bin/pytest

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install-dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install-dev
	$(PY) -m pip install -q -e ".[dev,bench]"
	$(PY) bench/auth_overhead.py

load: install-dev
	$(PY) -m pip install -q -e ".[dev,bench]"
	PY=$(PY) bash bench/load.sh

## make load-scale: 4 gunicorn workers behind PgBouncer (transaction mode), mixed keys, ~2 min
load-scale: install-dev
	$(PY) -m pip install -q -e ".[dev,bench]"
	PY=$(PY) bash bench/load_pgbouncer.sh

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache
