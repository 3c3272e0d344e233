# One command each: `make test` and `make demo` create .venv when missing and install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= cpu,dev
# The demo searches the study's data; without a network, point it at other data, e.g.
#   make demo DATA="data=cub200 data_dir=../shared/data/cub200_subset image_size=32"
DATA ?= data=cifar100_25
SPACE ?= improved
TRIALS ?= 3
EPOCHS ?= 2
DEMO_DIR ?= demo
PYTEST_ARGS ?=
# The suite runs in 2 pytest-xdist processes: in one it keeps a single core busy on average (it waits on the
# subprocesses it starts, the servers and the browser), so on 2 cores two processes halve it (BENCHMARKS.md,
# "Test suite"). TESTS_IN_PARALLEL= runs it in one process.
TESTS_IN_PARALLEL ?= -n 2 --dist worksteal

.PHONY: install tools test test-e2e test-backends demo clean container-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-$(EXTRAS): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed-$(EXTRAS)

# Debian's packages the tests use, installed where apt can (as root), else those tests skip and say why:
# docker-compose validates deploy/compose.yaml in tests/test_deploy.py (it accepts the GPU reservation syntax);
# chromium renders `cnntune dashboard` in tests/reporting/test_dashboard.py (playwright drives it: no browser download).
# Each package is installed on its own, so one that apt cannot find does not keep the other out.
tools:
	@missing=""; \
	command -v docker-compose >/dev/null || missing="docker-compose"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && apt-get update -q >/dev/null; then \
	  for pkg in $$missing; do DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$pkg >/dev/null || true; done; \
	fi; \
	command -v docker-compose >/dev/null || echo "docker-compose is not installed: its checks in tests/test_deploy.py will skip"; \
	[ -x /usr/bin/chromium ] || echo "chromium is not installed: the browser test in tests/reporting/test_dashboard.py will skip"

# The import contracts of pyproject.toml (layers, private modules, no cycle) first: seconds, and a broken one fails.
# The end-to-end tests (marker `e2e`: whole commands in real worker processes, the MLflow UI in a browser, tens of
# seconds each) are `make test-e2e`'s, which CI runs after this.
test: install tools
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest $(TESTS_IN_PARALLEL) -m "not e2e" $(PYTEST_ARGS)

test-e2e: install tools
	$(BIN)/python -m pytest $(TESTS_IN_PARALLEL) -m e2e $(PYTEST_ARGS)

# The other Keras backends, JAX and PyTorch, installed into the same venv: the smoke subset of tests/test_backends.py
# (marker `backends`) runs once per backend, then the matrix (marker `backend_matrix`) exports a model on each of the
# three backends and loads it on each. A backend that fails to import fails here, and the matrix fails rather than
# skips (CNNTUNE_REQUIRE_BACKENDS).
# torch for CPU: PyPI's Linux torch wheel is the CUDA build (~3 GB of NVIDIA libraries a CPU run never loads), so a
# CPU wheel pip finds without an index (its find-links) comes first, else PyTorch's CPU index (TORCH_INDEX).
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
BACKEND_TESTS = $(BIN)/python -m pytest tests/test_backends.py tests/trial/test_device_data.py tests/trial/test_accel.py $(PYTEST_ARGS)

$(VENV)/.installed-backends-$(EXTRAS): pyproject.toml $(VENV)/.installed-$(EXTRAS)
	$(BIN)/python -m pip install --quiet --no-index --no-deps torch 2>/dev/null \
	  || $(BIN)/python -m pip install --quiet torch --index-url $(TORCH_INDEX)
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS),jax,torch]"
	touch $@

test-backends: $(VENV)/.installed-backends-$(EXTRAS)
	$(BIN)/python -c "import jax, tensorflow, torch"
	KERAS_BACKEND=jax $(BACKEND_TESTS) -m backends
	KERAS_BACKEND=torch $(BACKEND_TESTS) -m backends
	CNNTUNE_REQUIRE_BACKENDS=1 $(BACKEND_TESTS) -m backend_matrix

# The demo runs where `make` was typed, so relative paths in DATA (data_dir=...) mean what they say; its study store,
# model files and exported model go to DEMO_DIR.
DEMO_STORE = --study demo --storage sqlite:///$(DEMO_DIR)/cnntune.db

demo: install
	mkdir -p $(DEMO_DIR)
	$(BIN)/cnntune search space=$(SPACE) $(DATA) epochs=$(EPOCHS) --trials $(TRIALS) $(DEMO_STORE)
	$(BIN)/cnntune trials $(DEMO_STORE)
	$(BIN)/cnntune best $(DEMO_STORE) --export $(DEMO_DIR)/model.keras

# The worker image built (CPU variant, podman) and run for real: --help, a study searched by two worker containers
# on the host's PostgreSQL, then the same through deploy/compose.yaml. Root, apt and PostgreSQL needed; see
# deploy/container-test.sh.
container-test: install
	VENV=$(VENV) bash deploy/container-test.sh

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
