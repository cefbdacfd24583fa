# Two commands on a fresh machine: `make demo` and `make test`.
# Each target creates its own virtual environment in .venv on first use, with exactly the versions
# of uv.lock (docs/dependencies.md); uv itself is installed, at a pinned version with its hashes,
# into .tools/uv by the system's pip.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
UV_DIR := .tools/uv
UV     := $(UV_DIR)/bin/uv
export UV := $(abspath $(UV))

.PHONY: demo test lint typecheck unit bench clean lock test-latest

$(UV): tools/uv-requirements.txt
	@echo "uv: installing uv $$(sed -n 's/^uv==\([^ ]*\).*/\1/p' $<) into $(UV_DIR) (pip, hashes checked)"
	@rm -rf $(UV_DIR)
	@$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-warn-script-location --root-user-action=ignore \
		--require-hashes --no-deps --target $(UV_DIR) -r $< 2>&1 | grep -v '^WARNING: Location' || true
	@test -x $(UV) || { echo "uv: installing from $< failed" >&2; exit 1; }

# --locked: refuse to install when uv.lock no longer matches pyproject.toml (run `make lock`).
$(STAMP): pyproject.toml uv.lock | $(UV)
	@echo "venv: installing the $$(grep -c '^\[\[package\]\]' uv.lock) packages of uv.lock into $(VENV)"
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --locked --all-extras --python $(PYTHON)
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/hposteer demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples evaluation_images images tools
	$(BIN)/ruff format --check src tests bench examples evaluation_images images tools
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# Two pytest-xdist workers by default, one test file each at a time (--dist loadfile keeps a module's
# live service and its tests together): many tests wait on processes, containers and leases, so two
# workers halve the wall time even on a 2-core machine. TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
unit: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test: lint typecheck unit

# A deliberate upgrade (docs/dependencies.md): `make test-latest` tries the newest versions that
# pyproject.toml allows; `make lock` moves uv.lock to them (LOCK_ARGS="--upgrade-package optuna" for
# one package, LOCK_ARGS= to re-resolve only what pyproject.toml changed); then `make test`, and
# commit both files.
LOCK_ARGS ?= --upgrade
lock: | $(UV)
	$(UV) lock $(LOCK_ARGS)

# The whole suite in .venv-latest, on the newest allowed versions of everything, without touching
# uv.lock; it prints which packages differ from the lock. Outside CI: CI runs what is locked.
LATEST := .venv-latest
test-latest: | $(UV)
	rm -rf $(LATEST)
	$(UV) venv --quiet --python $(PYTHON) $(LATEST)
	$(UV) pip compile --quiet --upgrade --all-extras --group dev --python $(LATEST)/bin/python \
		--no-header --output-file $(LATEST)/latest.txt pyproject.toml
	$(UV) pip sync --python $(LATEST)/bin/python $(LATEST)/latest.txt
	$(UV) pip install --quiet --python $(LATEST)/bin/python --no-deps -e .
	$(PYTHON) tools/lock_diff.py uv.lock $(LATEST)/latest.txt
	@touch $(LATEST)/.installed
	HPOSTEER_TEST_LATEST=1 $(MAKE) test VENV=$(LATEST)

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

# Chaos soak (docs/reliability.md): pilot and service SIGKILLs for SOAK_SECONDS (180), then the
# invariants; SOAK_DB=postgresql uses a fresh database on 127.0.0.1:5432; SOAK_SEED replays a run.
.PHONY: soak
soak: $(STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

# Container images, built without a registry (docs/containers.md): the base from debootstrap; every
# Python package is the file uv.lock pins (images/locked_wheels.py).
.PHONY: images
images: $(STAMP)
	images/build.sh

# Deployment images (docs/operator.md, "Images"): hposteer/service, hposteer/pilot and, for trying the
# compose file and the Kubernetes trial overlay, hposteer/postgres; same recipe as `images`.
.PHONY: deploy-images
deploy-images: $(STAMP)
	deploy/images/build.sh

clean:
	rm -rf $(VENV) $(LATEST) .tools .mypy_cache .pytest_cache .ruff_cache .hposteer-demo
