# bmx: the two commands are `make demo` (main job) and `make test` (whole suite).
# Both create/refresh the environment (.venv, Debian packages) on first use.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
JOBS ?= $(shell nproc)
CPP_BUILD ?= build/cpp
PYTEST_ARGS ?=

.PHONY: env build cpp-build cpp-test test test-fast test-arm test-asan demo clean

env:
	@bash scripts/setup-env.sh

# Rebuild the pybind11 module in place (bmx/_engine*.so) after C++ changes.
build: env
	@$(PY) setup.py -q build_ext --inplace

cpp-build: env
	@cmake -S . -B $(CPP_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release -DBMX_BUILD_TESTS=ON >/dev/null
	@cmake --build $(CPP_BUILD) -j $(JOBS)

cpp-test: cpp-build
	@cd $(CPP_BUILD) && ctest --output-on-failure -j $(JOBS)

# The whole suite (CI): C++ tests, every pytest (slow ones included), then the bounded
# sanitizer runs (C++ tests and the quick Python engine tests under ASan + UBSan; the C++
# tests under TSan, about 30 s).
test: build cpp-test
	$(PY) -m pytest tests $(PYTEST_ARGS)
	@BMX_ASAN_QUICK=1 bash scripts/test-asan.sh
	@bash scripts/test-tsan.sh

# Quick loop: skips tests marked slow.
test-fast: build
	$(PY) -m pytest tests -m "not slow" $(PYTEST_ARGS)

# Cross-build for aarch64 and armhf (NEON) and run the C++ tests and example under qemu-user.
test-arm: env
	@bash scripts/test-arm.sh

# AddressSanitizer + UBSan build of the C++ tests and the Python engine tests.
test-asan: env
	@bash scripts/test-asan.sh

# ThreadSanitizer (clang) build of the C++ tests: the lock-free thread pool and the
# threaded kernels.
.PHONY: test-tsan
test-tsan: env
	@bash scripts/test-tsan.sh

# libFuzzer (+ ASan/UBSan) on the model loader for FUZZ_SECONDS (default 120); see fuzz/README.md.
.PHONY: fuzz
fuzz: env
	@bash scripts/fuzz.sh

# The documentation site (MkDocs + mkdocstrings, numpydoc docstrings) into site/;
# warnings are errors.
.PHONY: docs
docs: env
	$(VENV)/bin/mkdocs build --strict

demo: build
	$(PY) -m bmx.demo

clean:
	rm -rf build demo-out bmx/_engine*.so
