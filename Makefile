# vidrepro: every target creates the environment first if it is missing.
#   make reproduce [TABLE=blip2_ablation] [SCALE=tiny|full] [SEEDS=1]   regenerate a table
#   make verify [TABLE=...] [SEEDS=1]                          rerun from nothing, compare with results/
#   make test                                                  ruff, pytest, notebook checks (CI)
PYTHON ?= python3
VENV   ?= .venv
TABLE  ?= blip2_ablation
SCALE  ?= tiny
SEEDS  ?= 1
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.vidrepro-installed

# Nothing may come from a model or dataset hub: tiny models are built from configs.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONHASHSEED := 0

.PHONY: setup test test-fast lint reproduce verify check lab bench data clean

setup: $(STAMP)

# Reinstalls when pyproject.toml changes; otherwise a no-op.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q
	$(BIN)/python ci/check_notebooks.py
	$(BIN)/python ci/run_notebooks.py

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

reproduce: setup
	$(BIN)/vidrepro reproduce $(TABLE) --scale $(SCALE) --seeds $(SEEDS)

verify: setup
	$(BIN)/vidrepro reproduce $(TABLE) --scale $(SCALE) --seeds $(SEEDS) --verify

check: setup
	$(BIN)/vidrepro check

data: setup
	$(BIN)/vidrepro data synth --kind all --size tiny

lab: setup
	$(BIN)/jupyter lab notebooks

bench: setup
	@for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf runs build lib/*.egg-info .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
