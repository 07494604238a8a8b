# byok: make certify runs the compliance suite, make test runs the project's tests.
# Both install what they need on a fresh Debian machine and are quick on a second run.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.byok-installed
DEBIAN_PACKAGES := softhsm2 opensc
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: certify test setup system-packages clean-state

certify: setup
	$(BIN)/byok certify

test: setup
	$(BIN)/python -m pytest tests

setup: system-packages $(STAMP)

# Install the Debian packages only when one is missing, so a second run asks apt nothing.
system-packages:
	@missing=""; for package in $(DEBIAN_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$package 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$package"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

# Removes the SoftHSM2 token and emulator data. The token holds the only copy of every
# AES key imported so far, so this is never part of another target.
clean-state:
	@echo "This deletes .byok/ with the SoftHSM2 token and the only copy of its AES keys."
	@read -p "Type DELETE to continue: " answer && [ "$$answer" = DELETE ] && rm -rf .byok
