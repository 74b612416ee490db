# The three commands a newcomer needs: make demo, make dev, make test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export GEO_PLATFORM_DATA_DIR ?= $(CURDIR)/.geo_platform
export DAGSTER_HOME ?= $(GEO_PLATFORM_DATA_DIR)/dagster_home
DEV_PORT ?= 3000

.PHONY: demo dev test install browser-deps lint benchmark clean

$(BIN)/geo-platform: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/geo-platform

demo: install
	$(BIN)/geo-platform demo

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

dev: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -h 127.0.0.1 -p $(DEV_PORT)

# Headless Chromium for the browser test: Debian's package (Playwright's own
# browser download does not work here).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

test: install browser-deps
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check geo_platform geo_platform_tests benchmarks

benchmark: install
	$(BIN)/python benchmarks/cog_tiers.py

clean:
	rm -rf $(GEO_PLATFORM_DATA_DIR)
