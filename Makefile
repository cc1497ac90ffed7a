# Developer entry points. Stack targets drive the native stack (compose/stack.sh); see its header.
.PHONY: stack-build stack-up stack-down stack-stop stack-start stack-status

STACK := compose/stack.sh

stack-build: ## build (or reuse cached) Collector, Prometheus, VictoriaLogs, Jaeger
	compose/build.sh

stack-up: ## build what is missing, start the stack, wait until ready
	$(STACK) up

stack-down: ## stop the whole stack (data kept under .stack/)
	$(STACK) down

stack-stop: ## stop one service: make stack-stop SERVICE=victorialogs
	$(STACK) stop $(SERVICE)

stack-start: ## start one service: make stack-start SERVICE=victorialogs
	$(STACK) start $(SERVICE)

stack-status: ## show which services run and are healthy
	$(STACK) status

# --- Python environment, tests, demo -------------------------------------------------------------
.PHONY: venv test test-unit lint demo
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

venv: $(VENV)/.installed ## create .venv with the plugin (editable), Airflow 3.3.2 and the test tools

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

test: venv stack-up ## set up everything (venv, stack) and run every test
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: venv ## fast tests only: no stack, no Airflow processes
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

demo: venv stack-up ## set up everything, run the demo DAGs in real Airflow, print a report read back from the stores
	$(PY) demo/run_demo.py

lint: venv ## ruff over the whole repository, mypy over the package
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# --- Grafana: dashboards, provisioning and alert rules generated from the query catalogue ---------------
.PHONY: grafana grafana-check

grafana: venv ## regenerate grafana/ (dashboards, provisioning, alert rules) from grafana/generator
	$(PY) -m grafana.generator

grafana-check: venv ## fail if grafana/ is not what grafana/generator writes
	$(PY) -m grafana.generator --check

# --- Benchmarks (usage and scenarios: benchmarks/__init__.py) ----------------------------------------
.PHONY: bench bench-full

bench: venv stack-up ## quick benchmarks against the Pushgateway and StatsD; writes benchmarks/RESULTS.md
	$(PY) -m benchmarks

bench-full: venv stack-up ## the full sizes (K up to 1000, R up to 100k; takes about an hour)
	$(PY) -m benchmarks --full
