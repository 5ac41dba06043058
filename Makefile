# smartlock: `make demo` runs the whole system, `make test` proves it.
# Both bootstrap .venv and install Debian's mosquitto when it is missing (as root).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: demo test check format lint types bootstrap mosquitto clean

demo: bootstrap mosquitto
	$(BIN)/smartlock demo $(ARGS)

test: bootstrap mosquitto check
	$(BIN)/pytest $(ARGS)

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

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache src/*.egg-info
