# segd — the two set-up commands are `make run` and `make test` (README.md).
# Both install the Debian packages that are missing first, so they work on a fresh machine.

SWIFT      ?= $(shell command -v swift || echo /opt/swift/usr/bin/swift)
CONFIG     ?= release
BIN        := .build/$(CONFIG)/segd
WEIGHTS    ?= samples/model/shapes_r18.safetensors
OUT        ?= out
# Debian packages segd builds against (system-library targets) and runs with.
# libheif1 (bookworm) has its HEVC (libde265) and AV1 (dav1d, aom) decoders built in, not
# as separate plugin packages, so libheif-dev pulls in everything HEIC and AVIF need.
APT_PACKAGES := pkg-config libdnnl-dev libturbojpeg0-dev libspng-dev libwebp-dev libtiff-dev \
                libheif-dev libfreetype-dev \
                libinotifytools0-dev libsqlite3-dev fonts-dejavu-core
# What only the tests need: a real browser for the status page (chromium), Prometheus' own
# text-format parser (promtool, in the prometheus package), systemd-analyze (systemd) for
# the unit's security rating, and a real PostgreSQL the cluster tests start themselves
# (initdb + pg_ctl into a temporary folder; docs/cluster.md).
TEST_APT_PACKAGES := chromium prometheus systemd postgresql
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps test-deps build run test bench fuzz clean install uninstall

all: build

# $(call apt_missing,PACKAGES): installs those of PACKAGES that are not installed.
define apt_missing
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing missing Debian packages:" $$missing; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
endef

deps:
	$(call apt_missing,$(APT_PACKAGES))

# The prometheus package is there for promtool: its server, which Debian enables, stays off.
test-deps: deps
	$(call apt_missing,$(TEST_APT_PACKAGES))
	@if command -v systemctl >/dev/null && systemctl is-enabled prometheus >/dev/null 2>&1; then \
	  $(SUDO) systemctl disable --now prometheus >/dev/null 2>&1 || true; \
	fi

build: deps
	$(SWIFT) build -c $(CONFIG)

run: build
	$(BIN) batch samples --out $(OUT) --weights $(WEIGHTS)

# Tests run a debug build: it compiles in about half the time of a release build, and the
# fixtures (a tiny model, small images) keep the debug-speed kernels fast enough.
test: deps test-deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --disable-swift-testing

# Speed against the peer (torchvision, same CPU), as ../shared/bench/WORKLOAD.md defines it.
# PY=path/to/python with torch to include the peer; not part of `make test`.
bench: build
	PY=$(PY) tools/bench/run.sh all

# libFuzzer + ASan harnesses for the JPEG, PNG, WebP, TIFF and HEIC/AVIF input paths (fuzz/),
# FUZZ_SECONDS each (FUZZ_TARGETS="webp tiff" runs some);
# not part of `make test`. Figures and findings: docs/reliability.md.
FUZZ_SECONDS ?= 600
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh

clean:
	rm -rf .build $(OUT)

# `make install`: the binary, the systemd unit (with a sample drop-in beside it), the
# configuration (never overwriting an existing /etc/segd/pipeline.yml) and the sample
# model. DESTDIR stages a package; PREFIX moves binary and data (the unit follows).
PREFIX     ?= /usr/local
SYSCONFDIR ?= /etc
UNITDIR    ?= /etc/systemd/system
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/segd
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	sed -e 's|/usr/local/bin/segd|$(PREFIX)/bin/segd|g' -e 's|/etc/segd/|$(SYSCONFDIR)/segd/|g' \
	    systemd/segd.service > $(DESTDIR)$(UNITDIR)/segd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/segd.service
	install -D -m 0644 systemd/segd.service.d/local.conf.sample $(DESTDIR)$(PREFIX)/share/doc/segd/segd.service.d/local.conf.sample
	install -D -m 0644 pipeline.yml $(DESTDIR)$(PREFIX)/share/doc/segd/pipeline.yml
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/segd/pipeline.yml ]; then \
	  echo "keeping $(DESTDIR)$(SYSCONFDIR)/segd/pipeline.yml (the shipped one is in $(PREFIX)/share/doc/segd/)"; \
	else \
	  install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/segd; \
	  sed -e 's|/usr/local/share/segd/|$(PREFIX)/share/segd/|g' pipeline.yml > $(DESTDIR)$(SYSCONFDIR)/segd/pipeline.yml; \
	  chmod 0644 $(DESTDIR)$(SYSCONFDIR)/segd/pipeline.yml; \
	fi
	@if [ -e $(WEIGHTS) ]; then \
	  install -D -m 0644 $(WEIGHTS) $(DESTDIR)$(PREFIX)/share/segd/shapes.safetensors; \
	else \
	  echo "warning: $(WEIGHTS) not found: no sample model installed; set model.weights in $(SYSCONFDIR)/segd/pipeline.yml"; \
	fi
	@if [ -z "$(DESTDIR)" ] && command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then \
	  systemctl daemon-reload; echo "installed; start with: systemctl enable --now segd"; \
	fi

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/segd $(DESTDIR)$(UNITDIR)/segd.service
	rm -rf $(DESTDIR)$(PREFIX)/share/segd $(DESTDIR)$(PREFIX)/share/doc/segd
	@echo "left in place: $(SYSCONFDIR)/segd/pipeline.yml and /var/lib/segd (results, journal)"
