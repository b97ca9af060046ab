# Quick start: `make demo` runs the mock API and a crawl into SQLite; `make test` runs the tests.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

demo: venv
	$(BIN)/python -m scripts.demo

# pytest exits 5 when it collects nothing; make treats any non-zero exit as failure.
test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: venv
	$(BIN)/python -m bench.one_client

clean:
	rm -rf $(VENV) .pytest_cache data
