# The two commands a newcomer needs: `make run` (whole stack on the embedded default) and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

# Tests run on the real services of this machine (docs/DESIGN.md §7); override to use others.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/gxbackend
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0
# make run's API port; the others move with FABRIC_PEER_ENDPOINT, SUBMITTER_METRICS_PORT, PROJECTOR_METRICS_PORT.
API_PORT ?= 3001

.PHONY: run test lint bench acceptance install lock container-test migrate clean

# The locks pin every dependency, direct or not, with its hashes; requirements*.txt are what people edit.
$(STAMP): requirements-dev.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q --require-hashes -r requirements-dev.lock
	touch $(STAMP)

install: $(STAMP)

## lock: regenerate requirements.lock (the image) and requirements-dev.lock (make install) after editing
## requirements.txt or requirements-dev.txt; the dev lock keeps the image's versions. Resolved for Linux x86_64
## and Python 3.11.2 (Debian bookworm's, the oldest 3.11 here), so no package hides behind a version marker and
## one wheelhouse fits every 3.11 interpreter.
UV_COMPILE = $(VENV)/bin/uv pip compile -q --python-platform x86_64-manylinux_2_28 --python-version 3.11.2 \
	--generate-hashes --custom-compile-command "make lock"
lock: $(STAMP)
	$(UV_COMPILE) -o requirements.lock requirements.txt
	$(UV_COMPILE) --constraint requirements.lock -o requirements-dev.lock requirements-dev.txt

## run: the API (:3001), devnet, one submitter and the projector, on SQLite + local memory. Ctrl-C stops all.
run: $(STAMP)
	DEBUG=true $(PY) manage.py migrate --noinput
	DEBUG=true $(PY) manage.py run_stack --api-port $(API_PORT)

## test: ruff, then pytest on PostgreSQL and Redis.
test: $(STAMP) lint
	DEBUG=true DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
		$(PY) -m pytest $(ARGS)

## container-test: build the image (deploy/docker/Dockerfile) and run the rendered mainnet manifests in podman
## against this machine's PostgreSQL and Redis and a devnet (deploy/tests/test_container.py; root, podman, runc,
## debootstrap). Cached under var/container/.
container-test: $(STAMP)
	DEBUG=true DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
		$(PY) -m pytest -m container -s deploy/tests/test_container.py $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

## bench: every benchmark in bench/, each printing ratios measured side by side (not part of `make test`).
## About 20 minutes on a 2-core machine. bench/api.py drives the API with wrk (Debian package `wrk`).
bench: $(STAMP)
	@command -v wrk >/dev/null || { test "$$(id -u)" = 0 && apt-get update -qq && apt-get install -y -q wrk >/dev/null; } || \
		{ echo "bench/api.py needs wrk: apt-get install wrk"; exit 1; }
	@failed=""; for script in bench/*.py; do \
		echo "== $$script"; \
		DEBUG=true DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) LOG_LEVEL=WARNING \
			$(PY) $$script || failed="$$failed $$script"; \
	done; \
	if [ -n "$$failed" ]; then echo "targets missed by:$$failed"; exit 1; fi

## acceptance: the whole stack on its own PostgreSQL, Redis and devnet, under load and every production fault;
## prints the figures, exits non-zero on a failed check. ACCEPTANCE_SCALE=small|full, ACCEPTANCE_FAULTS=a,b,...
acceptance: $(STAMP)
	$(PY) -m acceptance

clean:
	rm -rf var/ .pytest_cache .ruff_cache .venv-tools
