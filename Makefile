# libattnsink: the front door.
#
#   make study    deps, build, default corpus, then the main job (the `attnsink` program's study)
#   make check    deps, build, then every C and Python test through `meson test`
#   make deps     install what is missing (Debian/apt), quiet when everything is there
#   make build    configure once (meson setup) and build (ninja)
#   make corpus   extract the KJV Bible once into $(BUILD)/corpus/kjv.txt
#   make install  meson install; PREFIX=DIR installs under DIR, DESTDIR=DIR stages the install
#   make abi      refresh abi/libattnsink.abi, the reference of the abi test
#   make clean    remove the build directory
#   make hardening  the CI stages after check: ASan+UBSan build, valgrind, short fuzz runs
#   make fuzz     every libFuzzer target for FUZZ_SECONDS (default 300) each (docs/fuzzing.md)
#
# Variables: BUILD (build directory, default build), JOBS (ninja jobs, default: online
# cores), MESON_OPTS (extra `meson setup` options, used only when configuring),
# STUDY_ARGS (extra arguments to `attnsink study`), PREFIX (install prefix: `make install`
# sets it on the build directory, which keeps it), DESTDIR (stage the install under it).

BUILD      ?= build
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
MESON_OPTS ?=
STUDY_ARGS ?=
PREFIX     ?=
DESTDIR    ?=

# The prefix asked for: PREFIX, else a --prefix=DIR or -Dprefix=DIR in MESON_OPTS (which
# `meson setup` alone would ignore once the build directory exists). Absolute, as meson wants.
WANT_PREFIX := $(abspath $(or $(PREFIX),$(patsubst --prefix=%,%,$(filter --prefix=%,$(MESON_OPTS))),$(patsubst -Dprefix=%,%,$(filter -Dprefix=%,$(MESON_OPTS)))))

# The tokenizer test runs GPT-2's reference encoder (an npm package) with node. Node.js
# builds that bundle npm conflict with Debian's npm package: ask for it only when missing.
NPM_PACKAGE := $(if $(shell command -v npm 2>/dev/null),,npm)
DEB_PACKAGES := build-essential meson ninja-build pkg-config libblis-dev check \
                libjansson-dev python3-numpy python3-torch python3-pytest bible-kjv \
                abigail-tools python3-setuptools python3-pip python3-venv python3-sentencepiece \
                libutf8proc-dev nodejs $(NPM_PACKAGE) openmpi-bin libopenmpi-dev \
                clang libclang-rt-14-dev valgrind

# reads one option's value from `meson introspect --buildoptions` (JSON on stdin)
INSTALL_OPT := python3 -c 'import json, sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == sys.argv[1]))'

# the site-packages directory the Python package went to, from `meson introspect --installed`
INSTALLED_PYTHON := python3 -c 'import json, os, sys; print(next((os.path.dirname(os.path.dirname(p)) for p in json.load(sys.stdin).values() if p.endswith("/attnsink/_paths.py")), ""))'

CORPUS   := $(BUILD)/corpus/kjv.txt
ATTNSINK := $(BUILD)/examples/attnsink/attnsink

.PHONY: all deps configure build check study corpus install clean abi hardening fuzz
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
configure:
	@if [ ! -f "$(BUILD)/build.ninja" ]; then \
	  if [ -f "$(BUILD)/meson-private/coredata.dat" ]; then \
	    meson setup --reconfigure $(MESON_OPTS) "$(BUILD)"; \
	  else \
	    meson setup $(MESON_OPTS) $(if $(PREFIX),--prefix="$(WANT_PREFIX)") "$(BUILD)"; \
	  fi; \
	fi

build: configure
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

# A prefix asked for is set on the build directory first (meson configure), so the
# program's RUNPATH, attnsink.pc and the Python package's library path are made for it.
# A system prefix gets the loader's cache refreshed (as a package's install would).
install: configure
	@if [ -n "$(WANT_PREFIX)" ] && [ "$$(meson introspect --buildoptions "$(BUILD)" | $(INSTALL_OPT) prefix)" != "$(WANT_PREFIX)" ]; then \
	  echo "meson configure -Dprefix=$(WANT_PREFIX) $(BUILD)"; \
	  meson configure -Dprefix="$(WANT_PREFIX)" "$(BUILD)"; \
	fi
	ninja -C "$(BUILD)" -j $(JOBS)
	meson install -C "$(BUILD)" --no-rebuild $(if $(DESTDIR),--destdir "$(abspath $(DESTDIR))")
	@prefix=$$(meson introspect --buildoptions "$(BUILD)" | $(INSTALL_OPT) prefix); \
	libdir=$$(meson introspect --buildoptions "$(BUILD)" | $(INSTALL_OPT) libdir); \
	case "$$libdir" in /*) ;; *) libdir="$$prefix/$$libdir" ;; esac; \
	echo "make install: installed under $(abspath $(DESTDIR))$$prefix"; \
	if [ -n "$(DESTDIR)" ]; then \
	  echo "  pkg-config: PKG_CONFIG_SYSROOT_DIR=$(abspath $(DESTDIR)) PKG_CONFIG_PATH=$(abspath $(DESTDIR))$$libdir/pkgconfig"; \
	elif [ "$$prefix" = /usr ] || [ "$$prefix" = /usr/local ]; then \
	  if [ "$$(id -u)" = 0 ]; then ldconfig; echo "  ran ldconfig"; \
	  else echo "  run ldconfig as root once, so programs find libattnsink.so.1"; fi; \
	else \
	  echo "  pkg-config: PKG_CONFIG_PATH=$$libdir/pkgconfig"; \
	  echo "  programs you link: add -Wl,-rpath,$$libdir (attnsink itself needs nothing)"; \
	fi; \
	site=$$(meson introspect --installed "$(BUILD)" | $(INSTALLED_PYTHON)); \
	if [ -n "$$site" ] && ! /usr/bin/python3 -c 'import sys; sys.exit(sys.argv[1] not in sys.path)' "$$site" 2>/dev/null; then \
	  echo "  Python: PYTHONPATH=$(abspath $(DESTDIR))$$site"; \
	fi

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
