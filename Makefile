# smartlock: `make demo` runs the whole system, `make test` proves it.
# Both bootstrap .venv and install Debian's mosquitto when it is missing (as root).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=
# test files run in parallel, each file on one worker (its systems and fixtures stay together)
TEST_WORKERS ?= 2

.PHONY: demo test fuzz check format lint types bootstrap mosquitto faketime chromium systemd clean

demo: bootstrap mosquitto
	$(BIN)/smartlock demo $(ARGS)

test: bootstrap mosquitto faketime chromium systemd check
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile $(ARGS)

check: bootstrap
	$(BIN)/ruff format --check src tests
	$(BIN)/ruff check src tests
	$(BIN)/mypy

format: bootstrap
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

bootstrap: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# Mosquitto (broker + mosquitto_passwd) from Debian; the project starts its own instance.
mosquitto:
	@if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing Debian's mosquitto with apt-get..."; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; \
	else \
		echo "smartlock needs Mosquitto: run 'sudo apt-get install mosquitto' (Debian/Ubuntu)"; \
		echo "or install your distribution's mosquitto package, then run make again."; \
		exit 1; \
	fi

# libfaketime from Debian: the fault suite moves the whole system's clock (a lock offline for
# "ten minutes") without waiting; nothing in smartlock itself uses it.
faketime:
	@if [ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 ] || \
		ls /usr/lib/*/faketime/libfaketimeMT.so.1 >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing Debian's libfaketime with apt-get (for the fault tests)..."; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libfaketime >/dev/null; \
	else \
		echo "The fault tests that move the clock need libfaketime: sudo apt-get install libfaketime"; \
		echo "(they are skipped without it)."; \
	fi

# Debian's Chromium for the dashboard's browser tests (Playwright drives it; it never downloads
# a browser of its own).
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing Debian's chromium with apt-get (for the browser tests)..."; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "The browser tests need Chromium: sudo apt-get install chromium"; \
		echo "(they are skipped without it)."; \
	fi

# Debian's systemd for systemd-analyze: the tests verify the generated units with it (nothing
# runs under systemd here).
systemd:
	@if command -v systemd-analyze >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing Debian's systemd with apt-get (for the unit tests)..."; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null; \
	else \
		echo "The systemd unit tests need systemd-analyze: sudo apt-get install systemd"; \
		echo "(they are skipped without it)."; \
	fi

# The fuzz suite with a large budget (make test runs it with a small, fixed one).
fuzz: bootstrap
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -q tests/fuzz $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache src/*.egg-info
