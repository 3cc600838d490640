# The two commands a newcomer runs: `make demo` (set up, then the whole job end to end on ONNX Runtime / CPU)
# and `make test` (set up, then the test suite). Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The Triton side: a second, torch-free environment with the runtime (numpy < 2, which the Python-backend
# stub of nvidia-pytriton's tritonserver needs) and that wheel's server files, kept apart from the venv.
TRITON_VENV ?= .venv-triton
PYTRITON ?= nvidia-pytriton==0.7.0

.PHONY: setup triton-env demo test test-fast lint clean

setup: $(VENV)/.installed

# the demo needs only the training side; the tests add pytest, ruff and the Triton client on top
$(VENV)/.train: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[train]'
	touch $@

$(VENV)/.installed: $(VENV)/.train
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[train,test]'
	touch $@

triton-env: $(TRITON_VENV)/.installed

$(TRITON_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[cpu]' 'numpy<2'
	$(TRITON_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
		--target $(TRITON_VENV)/tritonserver '$(PYTRITON)'
	touch $@

demo: $(VENV)/.train
	PY=$(PY) bash scripts/demo.sh

test: lint triton-env
	$(PY) -m pytest -q

# the quick loop while working: lint, then everything but the tests marked slow
test-fast: lint
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(PY) -m ruff check .

clean:
	rm -rf data runs .pytest_cache
