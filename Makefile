# vidrepro: every target creates the environment first if it is missing.
#   make reproduce [TABLE=blip2_ablation] [SCALE=tiny|full] [SEEDS=1]   regenerate a table
#   make verify [TABLE=...] [SEEDS=1]                          rerun from nothing, compare with results/
#   make report [TABLE=...] [SEEDS=1]                          results/<table>.html in a browser
#   make test                                                  ruff, pytest, notebook checks (CI)
#   make lock                                                  pin .venv's versions in constraints.txt
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

.PHONY: setup lock report test test-oldest test-fast lint reproduce verify check lab bench data clean

setup: $(STAMP)

# Reinstalls when pyproject.toml or constraints.txt changes; otherwise a no-op. Every package
# comes at the exact version constraints.txt names, so a fresh environment computes the same
# numbers as the one the committed tables came from.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

# Rewrites constraints.txt from the environment (after a deliberate upgrade in .venv).
lock: setup
	@{ sed -n '/^#/p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | LC_ALL=C sort -f; } > constraints.txt.new
	@mv constraints.txt.new constraints.txt

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q
	$(BIN)/python ci/check_notebooks.py
	$(BIN)/python ci/run_notebooks.py

# The fast tests at pyproject.toml's lower bounds (ci/oldest.txt), in their own environment.
test-oldest:
	@test -x .venv-oldest/bin/python || $(PYTHON) -m venv --upgrade-deps .venv-oldest
	.venv-oldest/bin/python -m pip install --quiet -c ci/oldest.txt -e '.[dev]'
	.venv-oldest/bin/python -m pytest -q -m "not slow" -p no:cacheprovider

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

reproduce: setup
	$(BIN)/vidrepro reproduce $(TABLE) --scale $(SCALE) --seeds $(SEEDS)

report: setup
	$(BIN)/vidrepro report $(TABLE) --scale $(SCALE) --seeds $(SEEDS)

verify: setup
	$(BIN)/vidrepro reproduce $(TABLE) --scale $(SCALE) --seeds $(SEEDS) --verify

check: setup
	$(BIN)/vidrepro check

data: setup
	$(BIN)/vidrepro data synth --kind all --size tiny

lab: setup
	$(BIN)/jupyter lab notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

bench: setup
	@for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf runs build lib/*.egg-info .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
