# Makefile: the front door, kept thin. All build logic lives in CMake (CMakeLists.txt); this
# file installs the Debian packages, names the three build trees and runs the tools.
#
#   make test    Debian packages, Debug + ASan + UBSan in build/debug, then every test
#   make tsan    RelWithDebInfo + TSan in build/tsan, then the tests labelled "tsan"
#   make bench   Debian packages incl. the anchors, Release in build/release
#   make run     Release build of cascadefs, then mount the default store on ./mnt
#   make fuzz    clang + libFuzzer + ASan in build/fuzz; FUZZ_SECONDS per target (default 60)
#   make format  clang-format -i on our .h/.cc files
#   make lint    clang-tidy on our .cc files under engine cache fusefs tools
#   make clean   rm -rf build
#
# Extra ctest arguments: make test CTEST_ARGS='-R scheduler --repeat until-fail:5'
# Each build target re-runs the CMake configure step: it is quick, and it leaves no half
# configured tree behind (a failed configure still writes CMakeCache.txt).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
# cmake --build runs make below this one; keep its log free of "Entering directory" lines.
MAKEFLAGS += --no-print-directory

JOBS ?= $(shell nproc)
CTEST_ARGS ?=

DEBUG_DIR := build/debug
TSAN_DIR := build/tsan
RELEASE_DIR := build/release
FUZZ_DIR := build/fuzz
FUZZ_SECONDS ?= 60

CONFIGURE_DEBUG := cmake -S . -B $(DEBUG_DIR) -G "Unix Makefiles" \
  -DCMAKE_BUILD_TYPE=Debug -DCFS_SANITIZE=address
CONFIGURE_TSAN := cmake -S . -B $(TSAN_DIR) -G "Unix Makefiles" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCFS_SANITIZE=thread -DCFS_BUILD_BENCH=OFF
CONFIGURE_FUZZ := CC=clang CXX=clang++ cmake -S . -B $(FUZZ_DIR) -G "Unix Makefiles" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCFS_SANITIZE=address -DCFS_FUZZ=ON -DCFS_BUILD_BENCH=OFF
CONFIGURE_RELEASE := cmake -S . -B $(RELEASE_DIR) -G "Unix Makefiles" \
  -DCMAKE_BUILD_TYPE=Release -DCFS_BUILD_TESTS=OFF

# A run that finds no tests fails (--no-tests=error): a green run must have tested something.
CTEST := ctest --output-on-failure -j2 --no-tests=error

# GCC 12's sanitizer runtimes die at start-up ("unexpected memory mapping") or hang when the
# kernel randomizes mmap with more than 28 bits (vm.mmap_rnd_bits is 32 on some newer hosts).
# There the tests run with address randomization off. If setarch is refused (a container's
# seccomp profile), lower the host's setting instead: sysctl vm.mmap_rnd_bits=28.
NO_ASLR = $(shell bits="$$(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo 0)"; \
  if (( bits > 28 )); then echo "setarch $$(uname -m) -R"; fi)

# Our source files: tracked, or new and not ignored (so a file is formatted before its first
# commit); a tracked file deleted from the work tree is skipped. Names have no spaces
# (STYLE.md: snake_case).
sources = $(wildcard $(shell git ls-files --cached --others --exclude-standard -- $(1)))
FORMAT_FILES = $(call sources,'*.h' '*.cc')
LINT_FILES = $(call sources,'engine/*.cc' 'cache/*.cc' 'fusefs/*.cc' 'tools/*.cc')

.PHONY: help test tsan bench run fuzz format lint clean

help:
	@grep -E '^#   make ' $(firstword $(MAKEFILE_LIST)) | cut -c5-

test:
	scripts/install-deps.sh build
	$(CONFIGURE_DEBUG)
	cmake --build $(DEBUG_DIR) -j$(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(NO_ASLR) $(CTEST) --test-dir $(DEBUG_DIR) $(CTEST_ARGS)

# The TSan tree builds everything but runs only the tests labelled "tsan" in CMake: those
# that exercise concurrent code (engine/io, cache, the daemon). TSan is too slow for the rest.
tsan:
	scripts/install-deps.sh build
	$(CONFIGURE_TSAN)
	cmake --build $(TSAN_DIR) -j$(JOBS)
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  $(NO_ASLR) $(CTEST) --test-dir $(TSAN_DIR) -L tsan $(CTEST_ARGS)

bench:
	scripts/install-deps.sh bench
	$(CONFIGURE_RELEASE)
	cmake --build $(RELEASE_DIR) -j$(JOBS)

# The default store lives where XDG says user data goes; the mount point is ./mnt. A second
# `make run` while the mount is up says so and leaves it alone.
RUN_STORE ?= $(or $(XDG_DATA_HOME),$(HOME)/.local/share)/cascadefs/default
RUN_MOUNT ?= mnt
CASCADEFS := $(RELEASE_DIR)/tools/cascadefs

run:
	scripts/install-deps.sh build
	$(CONFIGURE_RELEASE) >/dev/null
	cmake --build $(RELEASE_DIR) -j$(JOBS) --target cascadefs
	@mkdir -p "$(RUN_STORE)" "$(RUN_MOUNT)"
	@if mountpoint -q "$(RUN_MOUNT)"; then \
	  echo "$(RUN_MOUNT) is already mounted:"; $(CASCADEFS) status "$(RUN_MOUNT)"; \
	else \
	  $(CASCADEFS) mount --store "$(RUN_STORE)" "$(RUN_MOUNT)"; \
	  echo "mounted the store $(RUN_STORE) on ./$(RUN_MOUNT)"; \
	fi
	@echo "next:  echo hello > $(RUN_MOUNT)/hello.txt; cat $(RUN_MOUNT)/hello.txt"
	@echo "       $(CASCADEFS) status $(RUN_MOUNT)      # requests, bytes, chunks written and reused"
	@echo "       $(CASCADEFS) umount $(RUN_MOUNT)      # flushes everything, then unmounts"

# Each target starts from its seed corpus (tests/fuzz/corpus/<name>/, read only: new inputs go
# to build/fuzz/corpus/<name>/) and runs FUZZ_SECONDS. A crash leaves its input in build/fuzz;
# add it to the seed corpus once fixed, so `make test` replays it forever.
fuzz:
	scripts/install-deps.sh build
	$(CONFIGURE_FUZZ)
	cmake --build $(FUZZ_DIR) -j$(JOBS)
	@for bin in $(FUZZ_DIR)/tests/*_fuzz; do \
	  name=$$(basename $$bin _fuzz); mkdir -p $(FUZZ_DIR)/corpus/$$name; \
	  echo "fuzz $$name for $(FUZZ_SECONDS) s"; \
	  (cd $(FUZZ_DIR) && $(NO_ASLR) ../../$$bin -max_total_time=$(FUZZ_SECONDS) \
	    corpus/$$name ../../tests/fuzz/corpus/$$name) || exit 1; \
	done

format:
	@files=($(FORMAT_FILES)); echo "clang-format -i: $${#files[@]} files"; \
	  (( $${#files[@]} == 0 )) || clang-format -i "$${files[@]}"

# clang-tidy reads the flags of each file from the Debug tree's compile_commands.json.
# .clang-tidy turns every finding into an error, so any finding fails the target.
lint:
	@[[ -f $(DEBUG_DIR)/compile_commands.json ]] || { \
	  scripts/install-deps.sh build && $(CONFIGURE_DEBUG); }
	@files=($(LINT_FILES)); echo "clang-tidy: $${#files[@]} files"; \
	  (( $${#files[@]} == 0 )) || \
	  printf '%s\0' "$${files[@]}" \
	    | xargs -0 -n1 -P$(JOBS) clang-tidy -p $(DEBUG_DIR) --quiet 2>&1 \
	    | { grep -v -E '^[0-9]+ (warning|error)s? (and [0-9]+ (warning|error)s? )?generated\.$$' \
	        || true; } \
	  || { echo "make lint: clang-tidy reported findings (above)" >&2; exit 1; }

clean:
	rm -rf build
