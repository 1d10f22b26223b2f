# Two commands on a fresh machine: `make run` (the service with its demo vendors) and `make test` (everything).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run serve simulate test lint bench fuzz clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip==24.3.1

# Installs exactly the versions in requirements.lock (pyproject pins the direct ones, the lock the rest).
$(STAMP): pyproject.toml requirements.lock | $(BIN)/python
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev]'
	touch $(STAMP)

# Flink's Kafka connector jars (not on PyPI as such): fetched, only the needed ones extracted, SHA-256 checked
# against app/distributed/flink/jars.sha256. Fast when they are already there.
JARS := var/flink-jars/.verified
$(JARS): app/distributed/flink/jars.sha256 $(STAMP)
	$(BIN)/python -m app.distributed.flink.jars
	@touch $(JARS)

# Debian's kcat: a test publishes a hand-written request with a Kafka client nobody here wrote. Without root or a
# reachable Debian mirror this only warns, and that test says why it was skipped.
KCAT := $(VENV)/.kcat
$(KCAT): | $(BIN)/python
	@command -v kcat >/dev/null 2>&1 || apt-get install -y -q kcat >/dev/null 2>&1 \
		|| echo "warning: could not install kcat (apt-get install kcat); its test will be skipped"
	@touch $(KCAT)

# The npm tools of the contract tests (Redocly CLI, openapi-typescript, tsc), exactly as
# tests/contract/package-lock.json pins them; npm's own cache keeps later installs offline-fast. Without a
# reachable npm registry this only warns, and those tests say why they were skipped.
CONTRACT := tests/contract/node_modules/.installed
$(CONTRACT): tests/contract/package.json tests/contract/package-lock.json
	@cd tests/contract && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null \
		&& touch node_modules/.installed \
		|| echo "warning: could not install the contract test tools (cd tests/contract && npm ci)"

# Debian's nginx: the three-node test puts a real load balancer in front of the API nodes. Installed only (Debian's
# package does not start it where services are not started, e.g. containers with policy-rc.d); the test runs its own.
NGINX := $(VENV)/.nginx
$(NGINX): | $(BIN)/python
	@command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || apt-get install -y -q nginx-light >/dev/null 2>&1 \
		|| echo "warning: could not install nginx (apt-get install nginx-light); the three-node test will be skipped"
	@touch $(NGINX)

install: $(STAMP) $(JARS) $(KCAT) $(CONTRACT) $(NGINX)

run: install
	$(BIN)/catalog demo

serve: install
	$(BIN)/catalog serve

simulate: install
	$(BIN)/catalog simulate

lint: install
	$(BIN)/ruff check app simulators tests bench tools
	$(BIN)/ruff format --check app simulators tests bench tools
	$(BIN)/mypy app simulators tests tools

test: lint
	$(BIN)/pytest -q

bench: install
	$(BIN)/python -m bench

# The mapper fuzzer as the hardening issue asks it: 10,000 new random cases per mapper (make test runs 1,500 fixed).
fuzz: install
	FUZZ_CASES=10000 $(BIN)/pytest -q -m slow tests/unit/test_mapper_fuzz.py

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
