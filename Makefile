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

venv: $(VENV)/.installed ## create .venv with the plugin (editable), Airflow 3.3.2, the test tools and Spark

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,spark]'
	touch $@

test: venv venv-airflow2 apt-deps stack-up ## set up everything (venvs, stack) and run every test
	status=0; \
	$(PY) -m pytest $(PYTEST_ARGS) || status=$$?; \
	{ $(AF2_PY) -m tests.oldest_versions $(OLDEST_CONSTRAINTS) && \
	  $(AF2_PY) -m pytest $(AF2_TESTS) $(PYTEST_ARGS); } || { s=$$?; [ $$status -ne 0 ] || status=$$s; }; \
	exit $$status

# --- Airflow 2.11 with the oldest supported OpenTelemetry, beside Airflow 3.3.2 with the newest -------------
# A second venv, .venv-af2: Airflow 2.11.2 and OpenTelemetry 1.27.0 (tests/oldest-otel.txt, the floors in
# pyproject.toml): Airflow's constraint files for 2.10 and 3.0 pin opentelemetry-* 1.27.0 beside protobuf
# 4.25 (2.11's, from the same weeks as 3.0's, were not readable here), so an image built with them has that
# pair. The unit tests and the real-Airflow test run there again; .venv has Airflow 3.3.2 and the newest
# OpenTelemetry. Airflow's constraint files are not reachable from here: what 2.11 needs is pinned below.
.PHONY: venv-airflow2 test-airflow2 test-oldest apt-deps
AF2_VENV := .venv-af2
AF2_PY := $(AF2_VENV)/bin/python
AIRFLOW2 := apache-airflow==2.11.2
AF2_PINS := 'psycopg2-binary>=2.9'
OLDEST_CONSTRAINTS := tests/oldest-otel.txt
# The unit tests and the 2.x flavour of the real-Airflow test; the other files in tests/airflow (executor
# shutdown, alerting deployment, job runs) were written and run against 3.x only.
AF2_TESTS := tests/unit tests/airflow/test_airflow_runs.py

venv-airflow2: $(AF2_VENV)/.installed ## create .venv-af2: the plugin (editable), Airflow 2.11, OpenTelemetry 1.27

$(AF2_VENV)/.installed: pyproject.toml Makefile $(OLDEST_CONSTRAINTS)
	test -x $(AF2_PY) || python3 -m venv $(AF2_VENV)
	$(AF2_PY) -m pip install -q --upgrade pip
	$(AF2_PY) -m pip install -q -e '.[test-tools]' '$(AIRFLOW2)' $(AF2_PINS) -c $(OLDEST_CONSTRAINTS)
	$(AF2_PY) -m pip check
	$(AF2_PY) -m tests.oldest_versions $(OLDEST_CONSTRAINTS)
	touch $@

test-airflow2: venv-airflow2 apt-deps stack-up ## unit and real-Airflow tests under Airflow 2.11 and OpenTelemetry 1.27
	$(AF2_PY) -m tests.oldest_versions $(OLDEST_CONSTRAINTS)
	$(AF2_PY) -m pytest $(AF2_TESTS) $(PYTEST_ARGS)

test-oldest: test-airflow2 ## the same: the oldest supported OpenTelemetry lives in .venv-af2

apt-deps: ## Debian packages the tests run as local servers: PostgreSQL (every test Airflow), Redis (Celery broker)
	compose/apt_deps.sh

test-unit: venv ## fast tests only: no stack, no Airflow processes
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

demo: venv stack-up ## set up everything, run the demo DAGs in real Airflow, print a report read back from the stores
	$(PY) -m demo.run_demo

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
