# chatsvc — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
RUNTIME = $(VENV)/.runtime
STAMP   = $(VENV)/.installed
TOOLS   = var/tools
PROMTOOL = $(TOOLS)/promtool
# The browser test drives Debian's Chromium (never `playwright install`).
CHROMIUM ?= /usr/bin/chromium
APT_GET  ?= apt-get
USER_ID  ?= $(shell id -u)

.PHONY: install install-runtime chromium idp-deps page-deps run test lint migrate token bench load promtool clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# `make run` needs only what the service needs.
$(RUNTIME): setup.cfg pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e .
	touch $(RUNTIME)

# The tests, linters and type checker on top.
$(STAMP): $(RUNTIME)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install-runtime: $(RUNTIME)
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

run: install-runtime
	$(PY) run.py

migrate: install-runtime
	$(PY) run.py migrate

# make token SUB=alice@example.com GROUPS=Onyx-Writers
token: install-runtime
	@$(PY) run.py token --sub $(or $(SUB),alice@example.com) --groups $(or $(GROUPS),Onyx-Writers)

# promtool (to check deploy/prometheus) from Debian's prometheus package, unpacked
# under var/tools: the package is never installed, so no Prometheus server starts.
$(PROMTOOL):
	@command -v promtool >/dev/null 2>&1 && mkdir -p $(TOOLS) && ln -sf "$$(command -v promtool)" $(PROMTOOL) && exit 0; \
	mkdir -p $(TOOLS)/deb && cd $(TOOLS)/deb && rm -f prometheus_*.deb && \
	{ apt-get download prometheus >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get download prometheus >/dev/null; }; } || \
	  { echo "make: cannot download Debian's prometheus package for promtool; install it with: apt-get install prometheus" >&2; exit 1; }; \
	dpkg -x prometheus_*.deb x && ln -sf "$$PWD/x/usr/bin/promtool" ../promtool
	@$(PROMTOOL) --version | head -n 1

promtool: $(PROMTOOL)

# The real OpenID provider of the integration suite (panva's oidc-provider, pinned
# in tests/idp/package-lock.json); node_modules is git-ignored.
IDP_STAMP = tests/idp/node_modules/.package-lock.json
$(IDP_STAMP): tests/idp/package.json tests/idp/package-lock.json
	cd tests/idp && npm ci --no-audit --no-fund

idp-deps: $(IDP_STAMP)

# axe-core for the page's accessibility checks (tests/page/package-lock.json).
AXE_STAMP = tests/page/node_modules/.package-lock.json
$(AXE_STAMP): tests/page/package.json tests/page/package-lock.json
	cd tests/page && npm ci --no-audit --no-fund

page-deps: $(AXE_STAMP)

test: install chromium idp-deps page-deps $(PROMTOOL)
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
