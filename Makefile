# byok: make certify runs the compliance suite, make test runs the project's tests.
# Both install what they need on a fresh Debian machine and are quick on a second run.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.byok-installed
# openssl: the runbook tests verify signed bundles with the real openssl binary, as auditors do.
DEBIAN_PACKAGES := softhsm2 opensc chromium opencryptoki opensc-pkcs11 gcc libc6-dev openssl
ALLURE := node_modules/allure-commandline/package.json
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: certify test bench setup system-packages java-runtime npm-client clean-state

certify: setup
	$(BIN)/byok certify

test: setup
	$(BIN)/python -m pytest tests

# Throughput of the KMS emulator beside moto's AWS KMS server; writes bench/results/*.json.
bench: setup
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python bench/emulator_throughput.py

setup: system-packages java-runtime $(STAMP) $(ALLURE)

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

# The Allure 2 command line runs on Java 17 or later; install it only when java is missing or older.
java-runtime:
	@major=$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1); \
	if [ -z "$$major" ] || [ "$$major" -lt 17 ]; then \
		echo "installing openjdk-17-jre-headless (java is $${major:-missing})"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless; \
	fi

npm-client:
	@command -v npm >/dev/null || { \
		echo "installing npm"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm; }

# allure-commandline goes into node_modules/ exactly as package-lock.json pins it.
$(ALLURE): package-lock.json | npm-client
	npm ci --no-audit --no-fund --loglevel=error
	touch $(ALLURE)

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
