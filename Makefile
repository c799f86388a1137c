# Kiln: the two commands are `make demo` (the main job on one machine) and
# `make test` (every test, with what they need installed and started).

GO      ?= go
BIN     := bin
BINARIES := coordinator worker publisher mirror

.PHONY: all build demo test setup check generate lint unit race clean man deb

all: build

build:
	@mkdir -p $(BIN)
	@for b in $(BINARIES); do $(GO) build -o $(BIN)/$$b ./$$b || exit 1; done

# The man pages are generated from the binaries' command line declarations
# (the same as --help); their tests fail when docs/man/ is not up to date.
man:
	@mkdir -p docs/man
	@for b in $(BINARIES); do $(GO) run ./$$b man > docs/man/$$b.1 || exit 1; done

# Debian packages of the four roles (kiln-coordinator, kiln-worker,
# kiln-publisher, kiln-mirror) in bin/deb; reproducible (see scripts/deb.sh).
deb:
	sh scripts/deb.sh $(BIN)/deb

setup:
	sh scripts/setup.sh

demo: setup build
	sh scripts/demo.sh

# Everything CI runs: house rules, generated code, and all tests with
# nothing skipped (KILN_TEST_STRICT=1 turns a missing daemon into a failure).
test: setup check race
	KILN_TEST_STRICT=1 $(GO) test -count=1 -timeout 60m ./...

# The packages whose tests need no root and no daemon but PostgreSQL
# (started by setup) run once more under the race detector; it keeps to
# about two minutes. The rest run under it with `go test -race ./...` when
# there is time.
RACE_PKGS := ./coordinator/scheduler/... ./coordinator/job ./coordinator/store \
	./coordinator/fleet ./coordinator/publish ./internal/... ./mirror/serve \
	./publisher/push ./publisher/daemon ./worker/agent ./worker/executor/... ./worker/shell

race:
	$(GO) test -race -count=1 -timeout 10m $(RACE_PKGS)

check: generate lint
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

generate:
	$(GO) tool buf generate
	@git diff --exit-code -- proto || { echo "generated code differs from the .proto files: run make generate and commit"; exit 1; }

lint:
	$(GO) tool buf lint

clean:
	rm -rf $(BIN)
