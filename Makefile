# The three commands a newcomer needs: make demo, make dev, make test.
# A Python 3.12 or 3.13 for the venv: PATH first, then pyenv's versions (see the script).
PYTHON ?= $(shell bash scripts/find_python.sh)
VENV := .venv
BIN := $(VENV)/bin
export GEO_PLATFORM_DATA_DIR ?= $(CURDIR)/.geo_platform
# embedded (no services) or production (PostgreSQL/PostGIS/pgSTAC and Azurite, from `make services`).
PROFILE ?= $(or $(GEO_PLATFORM_PROFILE),embedded)
export GEO_PLATFORM_PROFILE := $(PROFILE)
DEV_PORT ?= 3000
# The production profile needs its services running first.
PROFILE_DEPS := $(if $(filter production,$(PROFILE)),services)

.PHONY: demo dev test install browser-deps benchmark-deps lint benchmark clean

$(BIN)/geo-platform: pyproject.toml
	@test -n "$(PYTHON)" || { bash scripts/find_python.sh >/dev/null; exit 1; }
	@echo "[install] Python: $(PYTHON) ($$($(PYTHON) --version 2>&1))"
	@# A venv left by an older interpreter (3.11 before rasterio 1.5) is replaced.
	@if [ -x $(BIN)/python ] && ! $(BIN)/python -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then \
		echo "[install] $(VENV) is on $$($(BIN)/python --version 2>&1): recreating it"; rm -rf $(VENV); fi
	$(PYTHON) -m venv $(VENV)
	@echo "[install] installing geo_platform and its pinned dependencies into $(VENV) (about a minute)"
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --progress-bar off -e '.[test]'
	@echo "[install] done: $$($(BIN)/python -c 'import rasterio; print(f"rasterio {rasterio.__version__}, GDAL {rasterio.__gdal_version__}")')"
	touch $@

install: $(BIN)/geo-platform

demo: install $(PROFILE_DEPS)
	$(BIN)/geo-platform demo

# The instance of the profile (DAGSTER_HOME) is set up by geo-platform itself.
dev: install $(PROFILE_DEPS)
	$(BIN)/geo-platform dev --port $(DEV_PORT)

# Headless Chromium for the browser test: Debian's package (Playwright's own
# browser download does not work here).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

test: install browser-deps services
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check geo_platform geo_platform_tests benchmarks
	$(BIN)/ruff format --check geo_platform geo_platform_tests benchmarks
	$(BIN)/mypy

# The reference tool of the COG benchmarks: gdal_translate from Debian's gdal-bin.
benchmark-deps:
	@command -v gdal_translate >/dev/null 2>&1 || { \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends gdal-bin >/dev/null; }

# Figures, not tests: each script prints ratios against its reference and writes
# benchmarks/results/<script>.json (see benchmarks/README.md).
benchmark: install benchmark-deps services
	$(BIN)/python benchmarks/cog_tiers.py
	$(BIN)/python benchmarks/ingest_e2e.py
	$(BIN)/python benchmarks/ingest_small_files.py
	$(BIN)/python benchmarks/stac_load.py
	$(BIN)/python benchmarks/stac_search.py
	$(BIN)/python benchmarks/h3_grid.py
	$(BIN)/python benchmarks/big_raster.py
	$(BIN)/python benchmarks/reproject.py

clean:
	rm -rf $(GEO_PLATFORM_DATA_DIR)

# Local services of the production profile (PostgreSQL 15 + PostGIS + pgSTAC, Azurite):
# installed if missing and started; idempotent. See scripts/services.sh.
.PHONY: services services-down
services: install
	bash scripts/services.sh up

services-down:
	bash scripts/services.sh down
