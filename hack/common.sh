# Shared settings for the install scripts. Sourced, not run.
# Everything the project fetches lives under one cache folder, keyed by
# version, so a second run reuses it; override with LLMOPT_CACHE_DIR.
set -euo pipefail
LLMOPT_CACHE_DIR="${LLMOPT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/llm-optimizer}"
KUBE_VERSION="${KUBE_VERSION:-1.20.2}"
GO_BOOTSTRAP_VERSION="1.15"
TOOLS_BIN="$LLMOPT_CACHE_DIR/bin"
mkdir -p "$TOOLS_BIN"
log() { printf '[llm-optimizer setup] %s\n' "$*" >&2; }
