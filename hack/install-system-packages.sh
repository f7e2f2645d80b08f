#!/usr/bin/env bash
# Installs the Debian packages the project needs (idempotent: apt runs only
# when something is missing).
source "$(dirname "$0")/common.sh"
PACKAGES=(etcd-server rsync make ca-certificates unzip prometheus postgresql lua5.4)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The packaged services must not start on their own: the project starts
  # its own instances on loopback ports.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [[ ! -e $policy ]]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created_policy=1; fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  ((created_policy)) && rm -f "$policy"
fi
log "Debian packages present"
