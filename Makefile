# chatsvc — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
# The browser test drives Debian's Chromium (never `playwright install`).
CHROMIUM ?= /usr/bin/chromium
APT_GET  ?= apt-get
USER_ID  ?= $(shell id -u)

.PHONY: install chromium run test lint migrate token bench load clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Chromium for the browser test: installed from Debian when missing (as root), or
# the one command to run is printed and make fails -- the test is never skipped.
chromium:
	@if [ -x "$(CHROMIUM)" ]; then exit 0; fi; \
	if [ "$(USER_ID)" != 0 ]; then \
	  echo "make: Chromium is missing at $(CHROMIUM); as root, run: apt-get update && apt-get install -y chromium" >&2; \
	  exit 1; \
	fi; \
	echo "make: Chromium is missing at $(CHROMIUM): installing Debian's chromium"; \
	$(APT_GET) update && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y chromium || exit 1; \
	if [ ! -x "$(CHROMIUM)" ]; then \
	  echo "make: apt-get installed chromium, but $(CHROMIUM) is still missing" >&2; \
	  exit 1; \
	fi

run: install
	$(PY) run.py

migrate: install
	$(PY) run.py migrate

# make token SUB=alice@example.com GROUPS=Onyx-Writers
token: install
	@$(PY) run.py token --sub $(or $(SUB),alice@example.com) --groups $(or $(GROUPS),Onyx-Writers)

test: install chromium
	$(PY) -m ruff check chatsvc tests migrations
	$(PY) -m pytest --cov=chatsvc --cov-report=term --cov-fail-under=$(or $(COV_MIN),90) $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check chatsvc tests migrations
	$(PY) -m ruff format --check chatsvc tests migrations
	$(VENV)/bin/lint-imports
	$(PY) -m mypy chatsvc --ignore-missing-imports

# make bench BENCH_ARGS="--db both"   (--quick: < 1 min; --profile: py-spy per phase)
bench: install
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m tests.bench $(BENCH_ARGS)

# make load LOAD_ARGS="-u 20 -r 10 -t 30s"
load: install
	$(PY) -m pip install --quiet -e '.[load]'
	$(PY) -m tests.load.run $(LOAD_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .coverage htmlcov
