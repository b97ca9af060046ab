# Quick start: `make demo` runs the mock API and a crawl into SQLite; `make test` runs the tests.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench docs tools venv lock clean

venv: $(VENV)/.installed

# Exactly the locked packages, each checked against its hash (a test holds the
# virtualenv to the lock). The dependencies themselves are in pyproject.toml.
$(VENV)/.installed: requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	touch $@

# Re-resolve from pyproject.toml (after changing a dependency): requirements.lock, every package
# of the demo, the tests and CI with its hash; requirements.txt, the crawler's own (runtime) pins,
# which scrapyd-deploy and hosted Scrapy read.
lock:
	$(PYTHON) -m venv $(VENV)-lock && $(VENV)-lock/bin/python -m pip install --quiet uv
	$(VENV)-lock/bin/uv pip compile pyproject.toml --extra test --generate-hashes --python-version 3.11 \
	    --no-header -o requirements.lock
	$(VENV)-lock/bin/uv pip compile pyproject.toml --constraint requirements.lock --python-version 3.11 \
	    --no-header -o requirements.txt
	rm -rf $(VENV)-lock

# Prometheus, its Pushgateway and promtool (Debian packages), for the operating
# tests. Installed as root when missing; RUNLEVEL=1 keeps the packages from
# starting their services. Without them the tests that need them are skipped,
# except under CI, where they fail.
tools:
	@if command -v prometheus >/dev/null && command -v prometheus-pushgateway >/dev/null \
	    && command -v promtool >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends prometheus prometheus-pushgateway >/dev/null; \
	else echo "make tools: install prometheus and prometheus-pushgateway (Debian) for the metrics tests"; fi

demo: venv
	$(BIN)/python -m scripts.demo

# Two workers, then the tests that must run alone. pytest exits 5 when it
# collects nothing; make treats any non-zero exit as failure.
test: venv tools
	$(BIN)/python -m pytest -n 2 -m "not serial" $(PYTEST_ARGS)
	$(BIN)/python -m pytest -m serial $(PYTEST_ARGS)

# Writes bench/RESULTS.md and bench/results.json (takes about an hour).
bench: venv
	$(BIN)/python -m bench $(BENCH_ARGS)

# Regenerate the reference tables in docs/reference.md from the code.
docs: venv
	$(BIN)/python -m scripts.docs

clean:
	rm -rf $(VENV) .pytest_cache data var
