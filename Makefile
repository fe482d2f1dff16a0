VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
HOST ?= 127.0.0.1
WORKERS ?= 1
PYTHON ?= python3

.PHONY: run test lint fmt install install-dev clean bench

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt requirements.txt $(VENV)/.installed
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

run: install
	@if [ "$(WORKERS)" -gt 1 ] && [ -z "$$REDIS_URL" ]; then \
		echo "WORKERS=$(WORKERS) needs REDIS_URL: each worker would keep its own conversations and figures."; \
		exit 2; \
	fi
	@if [ "$(WORKERS)" -gt 1 ]; then export PROMETHEUS_MULTIPROC_DIR=$$(mktemp -d); fi; \
	exec $(VENV)/bin/uvicorn config.asgi:application --host $(HOST) --port $(PORT) --workers $(WORKERS) --no-access-log

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint Dockerfile

fmt: install-dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint
	$(PY) -m pytest

clean:
	rm -rf $(VENV)

# Loopback benchmark: latency, throughput, streaming and memory against a fake upstream (installs wrk).
bench: install-dev
	$(PY) bench/run.py
