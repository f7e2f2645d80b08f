# LLM Auto-Optimizer — every set-up step lives here, idempotently.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CACHE := $(or $(LLMOPT_CACHE_DIR),$(HOME)/.cache/llm-optimizer)
KUBECTL := $(CACHE)/bin/kubectl
CLUSTER_DIR := out/cluster
PYTEST_ARGS ?=

.PHONY: help deps venv system-deps kube-tools kube-build crds crds-check lint test \
        test-unit cluster-up cluster-down demo kind-up kind-down clean bench-gateway \
        bench-canary bench-optimizer

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

deps: venv system-deps kube-tools kube-build ## install everything (venv, Debian packages, kubectl/helm, kube-apiserver build)

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

system-deps: ## Debian packages (etcd-server, prometheus, postgresql, rsync)
	bash hack/install-system-packages.sh

kube-tools: ## pinned kubectl and helm into the cache
	bash hack/install-kube-tools.sh

kube-build: system-deps ## build kube-apiserver/kube-controller-manager v1.20.2 once per machine
	bash hack/build-kube.sh

crds: venv ## regenerate crds/ (and the chart's copy) from the pydantic models
	$(BIN)/llm-optimizer crds --out crds
	$(BIN)/llm-optimizer crds --out charts/llm-optimizer/crds

crds-check: venv
	$(BIN)/llm-optimizer crds --out crds --check
	$(BIN)/llm-optimizer crds --out charts/llm-optimizer/crds --check

lint: venv ## ruff and mypy
	$(BIN)/ruff check optimizer_operator tests
	$(BIN)/mypy

test: deps lint crds-check ## run the whole test suite (installs what it needs first)
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: venv ## only the tests that need no cluster
	$(BIN)/pytest -m "not cluster" $(PYTEST_ARGS)

cluster-up: deps ## start the local control plane in the background (out/cluster)
	$(BIN)/python -m optimizer_operator.localcluster up --dir $(CLUSTER_DIR)
	KUBECONFIG=$(CLUSTER_DIR)/kubeconfig $(KUBECTL) apply -f crds/

cluster-down: ## stop the local control plane
	$(BIN)/python -m optimizer_operator.localcluster down --dir $(CLUSTER_DIR)

demo: deps ## control plane + CRDs + operator + samples, then `kubectl get llmopt`
	$(BIN)/python -m optimizer_operator.demo

LITELLM_VERSION := 1.108.7
bench/.venv-litellm/.installed:
	test -x bench/.venv-litellm/bin/python || $(PYTHON) -m venv bench/.venv-litellm
	bench/.venv-litellm/bin/pip install --quiet --upgrade pip
	bench/.venv-litellm/bin/pip install --quiet 'litellm[proxy]==$(LITELLM_VERSION)'
	touch $@

bench-gateway: venv bench/.venv-litellm/.installed ## gateway overhead vs direct vs LiteLLM proxy -> bench/results/gateway.{md,json}
	$(BIN)/python bench/gateway_bench.py

bench-canary: venv ## false rollbacks and detection time vs Argo/Flagger-style rules -> bench/results/canary.{md,json}
	$(BIN)/python bench/canary_bench.py

bench-optimizer: venv ## trials to the oracle's cost at the quality floor vs random / scalar TPE -> bench/results/optimizer.{md,json}
	$(BIN)/python bench/optimizer_bench.py $(BENCH_ARGS)

# For users with Docker: a real kind cluster (not usable on machines without a Docker engine).
kind-up:
	kind create cluster --name llm-optimizer --config kind-config.yaml
	kubectl apply -f crds/

kind-down:
	kind delete cluster --name llm-optimizer

clean: cluster-down
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
