# City Patrol: every target creates what it needs (.venv, installs) by itself.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo demo-city test test-fast samples grid city clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "City Patrol needs Python 3.11 or newer")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

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
test: install
	$(PY) -m pytest -q --durations=15

## Everything but the slow end-to-end runs.
test-fast: install
	$(PY) -m pytest -q -m "not slow"

## Re-render the sample clips (deterministic).
samples: install
	$(PY) sample_videos/generate.py

grid: install
	$(PY) config/make_grid.py

city: install
	$(PY) config/make_city.py

clean:
	rm -rf var/demo .pytest_cache
