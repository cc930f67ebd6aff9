# The one entry point. Every target installs what it needs into .venv first, so a fresh clone needs only python3.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# aws-sam-cli pins its own boto3, so it gets a venv of its own (used by `sam validate --lint` in the tests).
SAM_VERSION := 1.170.0
SAM_VENV    := .sam-venv
SAM_STAMP   := $(SAM_VENV)/.installed-$(SAM_VERSION)
# checkov (the template's security checks) pins boto3==1.35.49, which clashes with ours: a venv of its own too.
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV    := .checkov-venv
CHECKOV_STAMP   := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)

# Debian's Chromium, for the Swagger UI test (tests/e2e/test_swagger_ui.py): installed by `make test` when missing.
CHROMIUM := /usr/bin/chromium
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install run test test-unit faults bench lint clean

install: $(STAMP) $(SAM_STAMP) $(CHECKOV_STAMP)

$(STAMP): pyproject.toml
	$(PY) -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(VENV)  # none yet, or one without pip
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(SAM_STAMP):
	$(SAM_VENV)/bin/python -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet 'aws-sam-cli==$(SAM_VERSION)'
	touch $@

$(CHECKOV_STAMP):
	$(CHECKOV_VENV)/bin/python -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet 'checkov==$(CHECKOV_VERSION)'
	touch $@

## Start the whole pipeline locally (moto + Redshift Data API emulator + functions) in the foreground.
run: $(STAMP)
	$(PY) -m local

# pytest with its temporary folders under a folder of this run's own, removed when it ends, instead of the shared
# /tmp/pytest-of-<user>: the embedded PostgreSQL opens that folder to its server user, and any other pytest starting
# on the machine meanwhile closes it again (pytest keeps it 0700), which failed this run's next database start.
PYTEST = tmp=$$(mktemp -d -t spectra-tests.XXXXXX) && chmod 755 "$$tmp" && trap 'rm -rf "$$tmp"' EXIT && \
	$(PY) -m pytest --basetemp="$$tmp/t"

# make test and make test-unit run in pytest-xdist workers, each with a local stack of its own (free ports, its own
# moto, emulator and PostgreSQL), a test file at a time (--dist loadfile: a file's module fixtures, its tenant and
# tables, are made once). Two workers on the 2-core machine: most of a test is waiting on the stack's threads and
# PostgreSQL, one process cannot keep both cores busy, and a serial run took past the 15 minutes make test has.
# More cores: make test PYTEST_WORKERS=4. PYTEST_WORKERS=0 runs in this process (as make faults does).
PYTEST_WORKERS ?= 2
PARALLEL = -n $(PYTEST_WORKERS) --dist loadfile

## Every test tier: unit, integration (local stack), e2e (HTTP in, event out).
test: install $(CHROMIUM)
	$(PYTEST) $(PARALLEL)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

test-unit: install
	$(PYTEST) $(PARALLEL) tests/unit

## The fault suite (.ci/run runs it after make test): kills, dropped and doubled events, throttling, failing webhooks.
# In one process: its cases kill and time parts of a stack, and a second worker's load would blur what they measure.
faults: install
	$(PYTEST) tests/faults tests/e2e/test_lost_events.py \
		"tests/e2e/test_webhooks.py::test_a_receiver_failing_its_first_deliveries_gets_the_event_once_it_recovers"

## Benchmarks: print tables and write JSON under bench/results/.
bench: install
	$(PY) -m bench

# checkov runs offline (--skip-download); each check it skips is skipped in template.yaml, on the resource, with why.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/cfn-lint template.yaml
	SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam validate --lint --template-file template.yaml --region us-east-1
	$(CHECKOV_VENV)/bin/checkov --file template.yaml --framework cloudformation --skip-download --compact --quiet

clean:
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) .pytest_cache

# ---- sam build (BuildMethod: makefile): SAM calls these with ARTIFACTS_DIR set. Code and dependencies are packaged
# apart, so a code change rebuilds kilobytes, not the pyarrow layer. The layer takes arm64 wheels for the Lambda
# runtime (Amazon Linux 2023, glibc 2.34: manylinux_2_28 wheels run there).
LAMBDA_CODE := spectra events producers consumers
FUNCTIONS   := AuthorizerFunction ApiFunction ExecutorFunction CompletionFunction ReconcilerFunction \
               S3DropFunction BulkResultsFunction NotifierFunction WebhookDeliveryFunction

$(addprefix build-,$(FUNCTIONS)):
	mkdir -p "$(ARTIFACTS_DIR)"
	cp -R $(LAMBDA_CODE) "$(ARTIFACTS_DIR)/"
	find "$(ARTIFACTS_DIR)" -name '__pycache__' -prune -exec rm -rf {} +

build-DependenciesLayer:
	$(PYTHON) -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml','rb'))['project']['dependencies']))" > "$(ARTIFACTS_DIR)/requirements.txt"
	$(PYTHON) -m pip install --quiet --target "$(ARTIFACTS_DIR)/python" \
		--platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64 \
		--implementation cp --python-version 3.12 --only-binary=:all: -r "$(ARTIFACTS_DIR)/requirements.txt"
	rm "$(ARTIFACTS_DIR)/requirements.txt"
	# Lambda allows 250 MB unzipped: drop what never runs there (C++ headers, test suites, bytecode caches)
	rm -rf "$(ARTIFACTS_DIR)/python/pyarrow/include" "$(ARTIFACTS_DIR)/python/pyarrow/tests"
	find "$(ARTIFACTS_DIR)/python" -name '__pycache__' -prune -exec rm -rf {} +
