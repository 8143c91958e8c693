# mlplane: `make run` installs and starts the platform, `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup run test test-fast bench bench-smoke services-up services-down services-status openapi schemas deploy-files clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

run: setup
	$(BIN)/mlplane up

test: setup services-up
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest tests/unit

bench: setup services-up
	$(BIN)/python bench/run.py

# Every benchmark at a tiny size: checks that each runs and reports (not its ratios), in under a
# minute, and leaves bench/results/latest.json alone.
bench-smoke: setup services-up
	MLPLANE_BENCH_SCALE=0.001 $(BIN)/python bench/run.py --no-save

services-up:
	deploy/local/services.sh up

services-down:
	deploy/local/services.sh down

services-status:
	deploy/local/services.sh status

openapi: setup
	$(BIN)/mlplane openapi > schemas/openapi.json

schemas: setup
	$(BIN)/mlplane schemas export

deploy-files: setup
	$(BIN)/python deploy/render.py

clean: services-down
	rm -rf .mlplane $(VENV)
