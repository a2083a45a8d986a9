# The two commands a user needs: `make train` (the tutorial's job) and `make test`.
# Each creates .venv and installs what it needs on a fresh machine.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: train test bench bench-quick install clean

$(STAMP): pyproject.toml setup.py src/softmaxreg/_kernels.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,report]'
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(VENV)/bin/softmaxreg train $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache src/softmaxreg/*.so

# Side-by-side benchmarks (BENCHMARKS.md). Peers get their own environments under
# bench/.venvs/ and are never installed for the tests. The data comes from
# $SOFTMAXREG_DATA, else the user cache (filled by a download when empty).
BENCH_DATA ?= $(if $(SOFTMAXREG_DATA),$(SOFTMAXREG_DATA),$(HOME)/.cache/softmaxreg)
FETCH := $(PY) -c 'import softmaxreg as s; [s.datasets.load(n) for n in ("mnist", "fashion-mnist")]'

bench: $(STAMP)
	$(FETCH)
	PYTHON=$(PYTHON) bash bench/setup_peers.sh
	$(PY) bench/run.py --dataset mnist --repeats 3 --data-dir $(BENCH_DATA)
	$(PY) bench/run.py --dataset fashion-mnist --repeats 3 --data-dir $(BENCH_DATA)

bench-quick: $(STAMP)
	$(FETCH)
	PYTHON=$(PYTHON) bash bench/setup_peers.sh torch sklearn
	$(PY) bench/run.py --quick --data-dir $(BENCH_DATA)
