# City Patrol: every target creates what it needs (.venv, installs) by itself.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The runtime installs without torch (`pip install -e .`); the lab and the tests need everything
# (`.[dev]`, which includes the `train` extra: torch, ultralytics).
LEAN   := $(VENV)/.installed-lean
FULL   := $(VENV)/.installed-dev

.PHONY: install install-dev demo demo-city test test-fast samples grid city clean

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "City Patrol needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(LEAN): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e .
	@touch $(LEAN)

$(FULL): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(LEAN) $(FULL)

## The runtime only: demo, serve, worker, analyze, detect on the exported model.
install: $(LEAN)

## Everything: the runtime, the lab (train, eval, bench) and the test tools.
install-dev: $(FULL)

## Run the product on the embedded defaults (Redis, SQLite) and the sample videos.
demo: install
	$(VENV)/bin/patrol demo

## The demo over a simulated city: CITY="--fixed 8 --vehicle 1 --drone 1 --mobile 10" sources
## played from the sample clips as camera-cost video (prepared once into .cache/sim).
CITY ?= --fixed 8 --vehicle 1 --drone 1 --mobile 10
demo-city: install
	$(VENV)/bin/patrol simulate --transport file $(CITY) -q --out var/sim/demo-city.yaml
	$(VENV)/bin/patrol demo --sources var/sim/demo-city.yaml --data-dir var/demo-city

## The whole test suite (real Redis, PostgreSQL, RTSP/RTMP servers where installed); the
## slowest tests are listed at the end so the suite's time stays in view.
test: install-dev
	$(PY) -m pytest -q --durations=15

## Everything but the slow end-to-end runs.
test-fast: install-dev
	$(PY) -m pytest -q -m "not slow"

## Re-render the sample clips (deterministic).
samples: install-dev
	$(PY) sample_videos/generate.py

grid: install
	$(PY) config/make_grid.py

city: install
	$(PY) config/make_city.py

clean:
	rm -rf var/demo .pytest_cache
