# Two commands on a fresh machine: `make demo` and `make test`.
# Each target creates its own virtual environment in .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[service,examples,dev,mlflow]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/hposteer demo

lint: $(STAMP)
	$(BIN)/ruff check service client tests bench examples evaluation_images
	$(BIN)/ruff format --check service client tests bench examples evaluation_images
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

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

# Chaos soak (docs/reliability.md): pilot and service SIGKILLs for SOAK_SECONDS (180), then the
# invariants; SOAK_DB=postgresql uses a fresh database on 127.0.0.1:5432; SOAK_SEED replays a run.
.PHONY: soak
soak: $(STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

# Container images, built without a registry (docs/containers.md): the base from debootstrap.
.PHONY: images
images: $(STAMP)
	images/build.sh

# Deployment images (docs/operator.md, "Images"): hposteer/service, hposteer/pilot and, for trying the
# compose file and the Kubernetes trial overlay, hposteer/postgres; same recipe as `images`.
.PHONY: deploy-images
deploy-images: $(STAMP)
	deploy/images/build.sh

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hposteer-demo
