# The two commands a newcomer runs: `make demo` (set up, then the whole job end to end on ONNX Runtime / CPU)
# and `make test` (set up, then the test suite). Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[train,test]'
	touch $@

demo: setup
	PY=$(PY) bash scripts/demo.sh

test: setup
	$(PY) -m pytest -q

clean:
	rm -rf data runs .pytest_cache
