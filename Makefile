# libattnsink: the front door.
#
#   make study    deps, build, default corpus, then the main job (the `attnsink` program's study)
#   make check    deps, build, then every C and Python test through `meson test`
#   make deps     install what is missing (Debian/apt), quiet when everything is there
#   make build    configure once (meson setup) and build (ninja)
#   make corpus   extract the KJV Bible once into $(BUILD)/corpus/kjv.txt
#   make install  meson install (prefix chosen at setup: MESON_OPTS=--prefix=...)
#   make abi      refresh abi/libattnsink.abi, the reference of the abi test
#   make clean    remove the build directory
#   make hardening  the CI stages after check: ASan+UBSan build, valgrind, short fuzz runs
#   make fuzz     every libFuzzer target for FUZZ_SECONDS (default 300) each (docs/fuzzing.md)
#
# Variables: BUILD (build directory, default build), JOBS (ninja jobs, default: online
# cores), MESON_OPTS (extra `meson setup` options, used only when configuring),
# STUDY_ARGS (extra arguments to `attnsink study`).

BUILD      ?= build
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
MESON_OPTS ?=
STUDY_ARGS ?=

DEB_PACKAGES := build-essential meson ninja-build pkg-config libblis-dev check \
                libjansson-dev python3-numpy python3-torch python3-pytest bible-kjv \
                abigail-tools python3-setuptools python3-pip python3-venv \
                clang libclang-rt-14-dev valgrind

CORPUS   := $(BUILD)/corpus/kjv.txt
ATTNSINK := $(BUILD)/examples/attnsink/attnsink

.PHONY: all deps build check study corpus install clean abi hardening fuzz
# Prerequisites run in the order written (deps before build before tests).
.NOTPARALLEL:

all: build

# Ask dpkg about each package; only when something is missing touch apt at all.
deps:
	@missing=""; \
	for p in $(DEB_PACKAGES); do \
	  case "$$(dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null)" in \
	    *" ok installed") ;; \
	    *) missing="$$missing $$p" ;; \
	  esac; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; \
	  elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; \
	  else echo "make deps: missing Debian packages:$$missing"; \
	       echo "make deps: not root and no sudo; install them with: apt-get install$$missing"; \
	       exit 1; fi; \
	  echo "make deps: installing$$missing"; \
	  $$sudo apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# Configure only if $(BUILD) is not configured yet (a half-made one is reconfigured).
build:
	@if [ ! -f "$(BUILD)/build.ninja" ]; then \
	  if [ -f "$(BUILD)/meson-private/coredata.dat" ]; then \
	    meson setup --reconfigure $(MESON_OPTS) "$(BUILD)"; \
	  else \
	    meson setup $(MESON_OPTS) "$(BUILD)"; \
	  fi; \
	fi
	ninja -C "$(BUILD)" -j $(JOBS)

check: deps build
	meson test -C "$(BUILD)" --print-errorlogs

corpus: deps $(CORPUS)

# The whole KJV, one verse a line ("  N text") under "Book C" chapter headings;
# -l100000 keeps `bible` from wrapping long verses.
$(CORPUS):
	@mkdir -p "$(@D)"
	bible -l100000 'gen1:1-rev22:21' > "$@.tmp" && mv "$@.tmp" "$@"

study: deps build corpus
	@if [ -x "$(ATTNSINK)" ]; then \
	  echo "$(ATTNSINK) study $(STUDY_ARGS)"; \
	  "$(ATTNSINK)" study $(STUDY_ARGS); \
	else \
	  echo "make study: $(ATTNSINK) is not built yet; runtime information instead:"; \
	  "$(BUILD)/examples/runtime_info"; \
	fi

# Refresh the ABI reference that the abi test compares the library with (on purpose only:
# after additions, or after an incompatible change together with a soname bump).
abi: build
	abidw --headers-dir include --no-corpus-path --out-file abi/libattnsink.abi "$(BUILD)/libattnsink.so"

install: build
	meson install -C "$(BUILD)"

clean:
	rm -rf "$(BUILD)"

hardening: deps build
	BUILD="$(BUILD)" .ci/hardening

# Long fuzzing runs: new inputs collect in build-fuzz/tests/fuzz-long/NAME (kept between
# runs); a crash is left there as crash-* and the run stops (docs/fuzzing.md).
FUZZ_SECONDS ?= 300
fuzz: deps
	@[ -f build-fuzz/build.ninja ] || CC=clang meson setup build-fuzz -Dfuzz=true -Dbench=false -Dpython=disabled
	ninja -C build-fuzz $$(cd tests && ls fuzz_*.c | sed 's|^|tests/|; s|\.c$$||')
	@set -e; for t in $$(cd tests && ls fuzz_*.c | sed 's/\.c$$//'); do \
	  seeds=tests/fuzz_corpus/$${t#fuzz_}; dict=""; [ -f "$$seeds.dict" ] && dict="-dict=$$seeds.dict"; \
	  mkdir -p build-fuzz/tests/fuzz-long/$$t; \
	  echo "$$t: $(FUZZ_SECONDS) s"; \
	  build-fuzz/tests/$$t -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -timeout=10 -print_final_stats=1 \
	    -artifact_prefix=build-fuzz/tests/fuzz-long/$$t/ $$dict build-fuzz/tests/fuzz-long/$$t $$seeds \
	    2>build-fuzz/tests/fuzz-long/$$t.log || { tail -30 build-fuzz/tests/fuzz-long/$$t.log; exit 1; }; \
	  grep -E '^(Done|stat::number_of_executed_units|#[0-9]+.*DONE)' build-fuzz/tests/fuzz-long/$$t.log; \
	done
