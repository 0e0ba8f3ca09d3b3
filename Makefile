# segd — the two set-up commands are `make run` and `make test` (README.md).
# Both install the Debian packages that are missing first, so they work on a fresh machine.

SWIFT      ?= $(shell command -v swift || echo /opt/swift/usr/bin/swift)
CONFIG     ?= release
BIN        := .build/$(CONFIG)/segd
WEIGHTS    ?= samples/model/shapes.safetensors
OUT        ?= out
# Debian packages segd builds against (system-library targets) and runs with.
APT_PACKAGES := pkg-config libdnnl-dev libturbojpeg0-dev libspng-dev libfreetype-dev \
                libinotifytools0-dev libsqlite3-dev fonts-dejavu-core
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps build run test bench clean

all: build

deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing missing Debian packages:" $$missing; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

build: deps
	$(SWIFT) build -c $(CONFIG)

run: build
	$(BIN) batch samples --out $(OUT) --weights $(WEIGHTS)

# Tests run a debug build: it compiles in about half the time of a release build, and the
# fixtures (a tiny model, small images) keep the debug-speed kernels fast enough.
test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

clean:
	rm -rf .build $(OUT)
