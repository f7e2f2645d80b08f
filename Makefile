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
        test-unit cluster-up cluster-down demo kind-up kind-down image kind-load deploy demo-kind \
        clean bench-gateway \
        bench-canary bench-judging bench-optimizer bench-router bench-scale fuzz

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
	$(BIN)/llm-optimizer crds --out charts/llm-optimizer/files/crds

crds-check: venv
	$(BIN)/llm-optimizer crds --out crds --check
	$(BIN)/llm-optimizer crds --out charts/llm-optimizer/files/crds --check

lint: venv ## ruff, mypy and the import layers (import-linter)
	$(BIN)/ruff check optimizer_operator tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: deps lint crds-check ## run the whole test suite (installs what it needs first)
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: venv ## only the tests that need no cluster
	$(BIN)/pytest -m "not cluster" $(PYTEST_ARGS)

cluster-up: deps ## start the local control plane in the background (out/cluster)
	$(BIN)/python -m optimizer_operator.local.cluster up --dir $(CLUSTER_DIR)
	KUBECONFIG=$(CLUSTER_DIR)/kubeconfig $(KUBECTL) apply -f crds/

cluster-down: ## stop the local control plane
	$(BIN)/python -m optimizer_operator.local.cluster down --dir $(CLUSTER_DIR)

demo: deps ## the whole loop live (control plane, Prometheus, gateway, simulator, operator) -> out/demo/report.md, pareto.png
	$(BIN)/python -m optimizer_operator.local.demo

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

bench-judging: venv ## judge calls to detect a 5-point quality drop: pairwise vs absolute scores -> bench/results/judging.{md,json}
	$(BIN)/python bench/judging_bench.py $(BENCH_ARGS)

bench-scale: deps ## one operator with 1,000 Rollouts + 200 policies, then two split by namespace -> bench/results/scale.{md,json}
	$(BIN)/python bench/scale_bench.py $(BENCH_ARGS)

fuzz: deps ## hostile specs with fresh randomness and many examples (FUZZ_EXAMPLES, default 500)
	LLMOPT_FUZZ_RANDOM=1 LLMOPT_FUZZ_EXAMPLES=$(or $(FUZZ_EXAMPLES),500) \
	  $(BIN)/pytest tests/faults/test_hostile_specs.py -k "generated or hostile_values"

bench-router: venv ## per-request routers vs random and oracle, k-fold on GSM8K (APGR, CPT) -> bench/results/router.{md,json}
	$(BIN)/python bench/router_bench.py $(BENCH_ARGS)

bench-optimizer: venv ## trials to the oracle's cost at the quality floor vs random / scalar TPE -> bench/results/optimizer.{md,json}
	$(BIN)/python bench/optimizer_bench.py $(BENCH_ARGS)

# For users with Docker: a real kind cluster (Docker cannot run on this project's CI
# machines; tests/unit/test_kind_path.py checks the commands these targets run).
IMAGE ?= ghcr.io/llmops/llm-optimizer:dev
KIND_CLUSTER ?= llm-optimizer
KIND_NAMESPACE ?= llm-optimizer

kind-up: ## (Docker) create the kind cluster from kind-config.yaml
	kind create cluster --name $(KIND_CLUSTER) --config kind-config.yaml

image: ## (Docker) build the operator/gateway image as $(IMAGE)
	docker build -t $(IMAGE) .

kind-load: ## (Docker) load $(IMAGE) into the kind cluster
	kind load docker-image $(IMAGE) --name $(KIND_CLUSTER)

deploy: ## (Docker) install the chart into the current kube context with $(IMAGE)
	helm upgrade --install llm-optimizer charts/llm-optimizer --namespace $(KIND_NAMESPACE) \
	  --create-namespace --set image.repository=$(firstword $(subst :, ,$(IMAGE))) \
	  --set image.tag=$(lastword $(subst :, ,$(IMAGE))) --set image.pullPolicy=IfNotPresent

demo-kind: kind-up image kind-load deploy ## (Docker) the chart on kind, then the samples
	kubectl apply -f config/samples/
	kubectl get llmopt -A

kind-down: ## (Docker) delete the kind cluster
	kind delete cluster --name $(KIND_CLUSTER)

clean: cluster-down
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
