# chatsvc — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: install idp-deps run test lint migrate token bench load clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) run.py

migrate: install
	$(PY) run.py migrate

# make token SUB=alice@example.com GROUPS=Onyx-Writers
token: install
	@$(PY) run.py token --sub $(or $(SUB),alice@example.com) --groups $(or $(GROUPS),Onyx-Writers)

# The real OpenID provider of the integration suite (panva's oidc-provider, pinned
# in tests/idp/package-lock.json); node_modules is git-ignored.
IDP_STAMP = tests/idp/node_modules/.package-lock.json
$(IDP_STAMP): tests/idp/package.json tests/idp/package-lock.json
	cd tests/idp && npm ci --no-audit --no-fund

idp-deps: $(IDP_STAMP)

test: install idp-deps
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
