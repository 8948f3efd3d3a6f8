# SigSentry — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: help run test install install-dev lock lint format bench load load-scale clean
.DEFAULT_GOAL := help

## make help: this list
help:
	@sed -n 's/^## \(make .*\)/\1/p; s/^##  */     /p' $(MAKEFILE_LIST)

# Python 3.11 or newer, asked before a virtualenv is made and of one made before: one made
# by an older python3 stayed, and every later run, PYTHON= or not, failed on it (a
# first-hour audit). $(call new_enough,python,what it is) stops with what to type.
define new_enough
@$(1) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "SigSentry needs" \
	"Python 3.11 or newer; $(2) is $$($(1) -V 2>&1). Name one: PYTHON=python3.11" \
	"(with make clean first if .venv exists)"; exit 1; }
endef

# The venv's own pip (the one ensurepip ships) installs the lock, which pins a newer pip, by hash.
$(VENV)/bin/python:
	$(call new_enough,$(PYTHON),$(PYTHON))
	$(PYTHON) -m venv $(VENV)

# Everything comes from a lock (`make lock`): each package at one version, each file checked
# against its sha256 (--require-hashes: a package the lock lacks is an error, not a download),
# setuptools too, so that the project itself is built without fetching anything
# (--no-build-isolation) and installed without its dependencies (--no-deps).
define install_locked
	$(call new_enough,$(PY),$(VENV))
	$(PY) -m pip install -q --require-hashes -r $(1)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
endef

$(VENV)/.installed: pyproject.toml requirements/runtime.txt | $(VENV)/bin/python
	$(call install_locked,requirements/runtime.txt)
	touch $@

$(VENV)/.installed-dev: pyproject.toml requirements/dev.txt | $(VENV)/bin/python
	$(call install_locked,requirements/dev.txt)
	touch $@ $(VENV)/.installed

## make install: make the virtualenv .venv (Python 3.11 or newer; PYTHON= names one) and install
##   the service in it from requirements/runtime.txt; make install-dev: from requirements/dev.txt,
##   with the dev and bench extras too (pytest, ruff, Playwright, uv, the peers of make bench)
install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## make lock: regenerate both locks from pyproject.toml (after changing a dependency there);
##   versions already locked stay. make lock UPGRADE=django moves one package (and what it
##   needs) to its newest allowed version, UPGRADE=all every package
LOCK = $(VENV)/bin/uv pip compile pyproject.toml requirements/build.in --python-version 3.11 \
	--python-platform linux --generate-hashes --custom-compile-command "make lock" --quiet \
	$(if $(filter all,$(UPGRADE)),--upgrade,$(if $(UPGRADE),--upgrade-package $(UPGRADE)))
lock: install-dev
	$(LOCK) -o requirements/runtime.txt
	$(LOCK) --extra dev --extra bench -c requirements/runtime.txt -o requirements/dev.txt

## make run: install, migrate the SQLite default, seed the demo, serve on http://127.0.0.1:8000
##   (HOST=, PORT= elsewhere),
##   with one worker beside the web server (scripts/run-demo.sh stops both together)
# The demo's own database, whatever DATABASE_URL / REDIS_URL the shell or .env name (the
# demo seeds accounts with a published password): RUN_DATABASE_URL / RUN_REDIS_URL opt in.
RUN_DATABASE_URL ?= sqlite:///$(CURDIR)/db.sqlite3
RUN_REDIS_URL ?=
# Links in the demo's emails and output point at this server unless SITE_URL says otherwise.
run: export SITE_URL ?= http://$(HOST):$(PORT)
run: export ALLOWED_HOSTS ?= localhost,127.0.0.1,$(HOST)
run: export DATABASE_URL = $(RUN_DATABASE_URL)
run: export REDIS_URL = $(RUN_REDIS_URL)
run: install
	@# Before the demo is seeded and its login URL printed: that URL would be another server's.
	@$(PY) -c 'import socket; h = "$(HOST)".strip("[]"); socket.create_server((h, $(PORT)), family=socket.AF_INET6 if ":" in h else socket.AF_INET).close()' 2>/dev/null \
		|| { echo "$(HOST):$(PORT) is in use (or not this machine's): make run PORT=8001"; exit 1; }
	@echo "  database: $(RUN_DATABASE_URL)"
	DEBUG=true $(PY) manage.py migrate --noinput
	DEBUG=true $(PY) manage.py seed_demo
	@# The URL is printed by gunicorn.conf.py once the server listens (SIGSENTRY_RUN_URL).
	@DEBUG=true HTTPS_ONLY=false WEBHOOKS_ALLOW_PRIVATE=$${WEBHOOKS_ALLOW_PRIVATE:-true} \
		SIGSENTRY_RUN_URL=http://$(HOST):$(PORT)/ PY=$(PY) GUNICORN=$(VENV)/bin/gunicorn \
		BIND=$(HOST):$(PORT) exec bash scripts/run-demo.sh

## make test: install with the dev extra and run the whole suite (PostgreSQL when DATABASE_URL names one),
## one pytest-xdist worker per core, at most 4 (each on its own Redis database: sigsentry/test_settings.py)
test: install-dev
	$(VENV)/bin/pytest -n auto --maxprocesses 4

## make lint: ruff check and format check; make format: fix what they can
lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install-dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## make bench: the cost of authentication per request, ours and the peers' (~4 min, PostgreSQL)
bench: install-dev
	$(PY) bench/auth_overhead.py

## make load: wrk against gunicorn (2 workers), checked for lost usage counts
load: install-dev
	PY=$(PY) bash bench/load.sh

## make load-scale: 4 gunicorn workers behind PgBouncer (transaction mode), mixed keys, ~2 min
load-scale: install-dev
	PY=$(PY) bash bench/load_pgbouncer.sh

## make clean: remove the virtualenv and caches
clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache
