# Two commands on a fresh machine with Python 3.11 and make:  `make demo`  and  `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
export REMATCH_HOME ?= $(CURDIR)/.rematch

.PHONY: install demo test ui benchmark clean

$(BIN)/rematch: pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or: make PYTHON=python3 ...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e '.[test]'
	@touch $@

install: $(BIN)/rematch

demo: install
	$(BIN)/rematch demo

test: install
	$(BIN)/python -m pytest -q --durations=30

ui: install
	$(BIN)/rematch ui

benchmark: install
	$(BIN)/python -m benchmarks --suite synthetic --sizes 1000 --time-limit 30
	$(BIN)/python -m benchmarks --suite synthetic --sizes 10000 --time-limit 60 --no-baselines
	$(BIN)/python -m benchmarks --suite synthetic --sizes 50000 --time-limit 300 --no-baselines
	$(BIN)/python -m benchmarks --suite gap --time-limit 60 --baseline-time-limit 20
	$(BIN)/python -m benchmarks --suite exact --time-limit 20 --exact-time-limit 600
	$(BIN)/python -m benchmarks --suite ingest --sizes 10000

clean:
	rm -rf $(VENV) .rematch
