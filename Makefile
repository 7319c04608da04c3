# Two commands do all the set-up on a fresh Debian machine: `make demo` and `make test`.
# Both create .venv, install exactly requirements.lock (hashes checked) and the package.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEBIAN_TEST_PACKAGES := postgresql pgbouncer prometheus prometheus-alertmanager chromium nginx-light iptables iproute2 systemd shellcheck redis-server

.PHONY: demo test lint typecheck unit js-test bench lock clean debian-packages

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

demo: $(STAMP)
	$(BIN)/sidecar demo

debian-packages:
	@bash scripts/ensure-debian-packages.sh $(DEBIAN_TEST_PACKAGES)

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) debian-packages lint typecheck js-test
	$(BIN)/python -m pytest

# The browser client's unit tests (node's built-in runner, well under a second). Without node
# they are skipped, except in CI, where node is expected.
js-test:
	@if command -v node >/dev/null 2>&1; then cd clients/js && node --test --test-reporter=dot --disable-warning=ExperimentalWarning test/*.test.js; \
	elif [ "$$CI" = "true" ]; then echo "node is required to test clients/js" >&2; exit 1; \
	else echo "node not found: skipping the clients/js unit tests"; fi

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit -q

bench: $(STAMP)
	$(BIN)/python -m bench

# Re-resolve dependencies (needs network to PyPI); commit the result.
lock:
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 -o requirements.lock
	@# The container image installs only what `sidecar serve` needs, at the same versions.
	$(BIN)/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 \
		--constraint requirements.lock -o deploy/requirements-runtime.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
