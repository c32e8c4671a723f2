# Every target bootstraps its own virtual environment; nothing needs to be installed by hand.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo example test lint format bench web venv clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	@touch $(STAMP)

venv: $(STAMP)

# Builds the browser client and demo page into the Python package (needs Node/npm).
web:
	@bash scripts/build-web.sh

demo: $(STAMP) web
	$(VENV)/bin/tokenwire demo

# The FastAPI chat backend that embeds tokenwire (examples/fastapi_chat), with the mock model.
example: $(STAMP)
	$(PY) -m examples.fastapi_chat

test: $(STAMP) web
	@bash scripts/system-deps.sh
	cd web && npm test --silent
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

format: $(STAMP)
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

# Results go to bench/results/local/ (untracked); UPDATE=1 rewrites the published bench/results/.
bench: $(STAMP) web
	@bash scripts/system-deps.sh
	$(PY) -m bench $(if $(FULL),--full,) $(if $(UPDATE),--publish,)

clean:
	rm -rf $(VENV) web/node_modules src/tokenwire/static .pytest_cache .ruff_cache
