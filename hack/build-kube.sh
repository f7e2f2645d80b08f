#!/usr/bin/env bash
# Builds kube-apiserver and kube-controller-manager v$KUBE_VERSION from Debian
# bookworm's `kubernetes` source package with Go 1.15 from Debian bullseye,
# once per machine. The controller-manager runs only the garbage collector and
# namespace controllers in tests, so ownerReferences clean up as in a cluster.
#
# Why Go 1.15: built with bookworm's Go 1.19 the binary crashes on the first
# custom-resource write (vendored modern-go/reflect2 v1.0.1 is incompatible
# with Go >= 1.18). Go 1.15 is unpacked into the cache, not installed.
# Apt runs with private source lists and state, so the system's apt sources
# are left untouched.
source "$(dirname "$0")/common.sh"
COMPONENTS=(kube-apiserver kube-controller-manager)
missing=()
for c in "${COMPONENTS[@]}"; do
  [[ -x $TOOLS_BIN/$c-v$KUBE_VERSION ]] || missing+=("$c")
done
if ((${#missing[@]} == 0)); then
  log "kube-apiserver and kube-controller-manager v$KUBE_VERSION cached in $TOOLS_BIN"
  exit 0
fi
WORK="$LLMOPT_CACHE_DIR/build"
APT="$LLMOPT_CACHE_DIR/apt"
mkdir -p "$WORK" "$APT/lists/partial" "$APT/archives/partial"
cat >"$APT/sources.list" <<SRC
deb-src http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bullseye main
SRC
apt_private=(-o "Dir::Etc::SourceList=$APT/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
             -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache::Archives=$APT/archives"
             -o "Dir::Cache::pkgcache=$APT/pkgcache.bin" -o "Dir::Cache::srcpkgcache=$APT/srcpkgcache.bin"
             -o "APT::Architecture=amd64" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")

GOROOT_DIR="$LLMOPT_CACHE_DIR/go$GO_BOOTSTRAP_VERSION"
if [[ ! -f $GOROOT_DIR/.complete ]]; then
  log "fetching Go $GO_BOOTSTRAP_VERSION from Debian bullseye (private apt lists)"
  apt-get "${apt_private[@]}" update -qq
  rm -rf "$WORK/go-debs" "$WORK/go-root" && mkdir -p "$WORK/go-debs" "$WORK/go-root"
  (cd "$WORK/go-debs" && apt-get "${apt_private[@]}" download "golang-$GO_BOOTSTRAP_VERSION-go" "golang-$GO_BOOTSTRAP_VERSION-src")
  for deb in "$WORK"/go-debs/*.deb; do dpkg -x "$deb" "$WORK/go-root"; done
  rm -rf "$GOROOT_DIR"
  mv "$WORK/go-root/usr/lib/go-$GO_BOOTSTRAP_VERSION" "$GOROOT_DIR"
  # The -src package installs its tree under /usr/share and links it from
  # /usr/lib; make the private GOROOT self-contained.
  find "$GOROOT_DIR" -type l -lname "*share/go-$GO_BOOTSTRAP_VERSION*" -delete
  cp -a "$WORK/go-root/usr/share/go-$GO_BOOTSTRAP_VERSION/." "$GOROOT_DIR/"
  rm -rf "$WORK/go-root" "$WORK/go-debs"
  "$GOROOT_DIR/bin/go" version >/dev/null
  touch "$GOROOT_DIR/.complete"
fi
export GOROOT="$GOROOT_DIR" PATH="$GOROOT_DIR/bin:$PATH"
go version

SRC_DIR="$WORK/gopath/src/k8s.io/kubernetes"
if [[ ! -f $SRC_DIR/Makefile ]]; then
  log "fetching the kubernetes source package from Debian bookworm"
  apt-get "${apt_private[@]}" update -qq
  rm -rf "$WORK/src-dl" && mkdir -p "$WORK/src-dl"
  (cd "$WORK/src-dl" && apt-get "${apt_private[@]}" source --download-only kubernetes)
  orig=$(ls "$WORK"/src-dl/kubernetes_*.orig.tar.* | head -n1)
  rm -rf "$WORK/gopath" && mkdir -p "$SRC_DIR"
  tar -xf "$orig" -C "$SRC_DIR" --strip-components=1
  rm -rf "$WORK/src-dl"
fi

log "building ${missing[*]} (several minutes on 2 cores)"
export GOPATH="$WORK/gopath" GO111MODULE=off GOFLAGS="" GOCACHE="$WORK/gocache"
cd "$SRC_DIR"
# The tarball has no git metadata; pin the version the build stamps.
export KUBE_GIT_VERSION="v$KUBE_VERSION" KUBE_GIT_TREE_STATE=clean
if [[ ! -f $WORK/.generated ]]; then
  make generated_files >"$WORK/generated_files.log" 2>&1 || { tail -50 "$WORK/generated_files.log"; exit 1; }
  touch "$WORK/.generated"
fi
for c in "${missing[@]}"; do
  make WHAT="cmd/$c" >"$WORK/build-$c.log" 2>&1 || { tail -50 "$WORK/build-$c.log"; exit 1; }
  built=$(find "$SRC_DIR/_output" -type f -name "$c" -perm -u+x | head -n1)
  install -m 0755 "$built" "$TOOLS_BIN/$c-v$KUBE_VERSION.tmp"
  mv "$TOOLS_BIN/$c-v$KUBE_VERSION.tmp" "$TOOLS_BIN/$c-v$KUBE_VERSION"
  log "$c v$KUBE_VERSION built: $TOOLS_BIN/$c-v$KUBE_VERSION"
done
