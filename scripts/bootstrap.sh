#!/usr/bin/env bash
# Install what voxbus needs on a fresh Linux machine, then nothing else.
#   scripts/bootstrap.sh run   → uv, libopus0 and the Python environment (uv.lock)
#   scripts/bootstrap.sh test  → the same, plus espeak-ng, chromium, haproxy, prometheus,
#                                redis-server, Java 17+ and Maven
#                                (Debian/Ubuntu packages), the Kafka broker jars (Maven Central),
#                                and kustomize (built with Go) where neither kustomize nor kubectl is.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.8
# the kustomize tests/unit/test_k8s.py renders deploy/k8s with, where no kustomize or kubectl is
# installed (v5.8.3 and later need Go 1.27)
KUSTOMIZE_VERSION=v5.8.2
purpose=${1:-run}

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

ensure_uv() {
  if command -v uv >/dev/null 2>&1; then return; fi
  say "installing uv $UV_VERSION (pip)"
  python3 -m pip install --quiet "uv==$UV_VERSION" \
    || python3 -m pip install --quiet --user --break-system-packages "uv==$UV_VERSION"
  export PATH="$HOME/.local/bin:$PATH"
  command -v uv >/dev/null || { echo "uv is not on PATH after installing it; add ~/.local/bin to PATH" >&2; exit 1; }
}

has_library() { ldconfig -p 2>/dev/null | grep -q "$1"; }

# Debian packages for what is missing: `ensure_apt_packages CHECK PACKAGE [CHECK PACKAGE …]`,
# where CHECK is `cmd:NAME` (a command) or `lib:NAME` (a shared library).
ensure_apt_packages() {
  local missing=()
  while [ $# -gt 0 ]; do
    case "$1" in
      cmd:*) command -v "${1#cmd:}" >/dev/null 2>&1 || missing+=("$2") ;;
      lib:*) has_library "${1#lib:}" || missing+=("$2") ;;
    esac
    shift 2
  done
  [ ${#missing[@]} -eq 0 ] && return
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing: ${missing[*]} — install them with your package manager" >&2
    exit 1
  fi
  say "installing ${missing[*]} (apt)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# kustomize for the manifests' tests: one on PATH (kustomize, or kubectl's built-in), else
# $VOXBUS_CACHE_DIR/bin/kustomize (default .cache/bin), built from its Go module with `go install`
ensure_kustomize() {
  local bin="${VOXBUS_CACHE_DIR:-.cache}/bin"
  if command -v kustomize >/dev/null 2>&1 || command -v kubectl >/dev/null 2>&1 \
    || [ -x "$bin/kustomize" ]; then
    return
  fi
  local go
  go=$(command -v go || true)
  [ -z "$go" ] && [ -x /usr/local/go/bin/go ] && go=/usr/local/go/bin/go
  if [ -z "$go" ]; then
    echo "no kustomize, kubectl or Go: install one of them (Go 1.26+ builds kustomize $KUSTOMIZE_VERSION)" >&2
    exit 1
  fi
  say "building kustomize $KUSTOMIZE_VERSION (go install, into $bin)"
  mkdir -p "$bin"
  GOBIN="$(cd "$bin" && pwd)" GOFLAGS=-buildvcs=false "$go" install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
}

ensure_uv
# libopus decodes raw Opus (opuslib loads it at run time)
ensure_apt_packages lib:libopus.so.0 libopus0
say "syncing the Python environment from uv.lock"
uv sync --frozen --quiet --compile-bytecode

if [ "$purpose" = test ]; then
  # espeak-ng speaks the tests' speech; chromium is the browser the /test page and the API docs
  # are tested in; haproxy and prometheus run in `voxbus stack`'s local cluster; redis-server,
  # Java and Maven give them real engines
  PATH="$PATH:/usr/sbin:/sbin" ensure_apt_packages cmd:espeak-ng espeak-ng cmd:chromium chromium \
    cmd:haproxy haproxy cmd:prometheus prometheus
  if [ -z "${REDIS_URL:-}" ]; then
    ensure_apt_packages cmd:redis-server redis-server
  fi
  if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
    ensure_apt_packages cmd:java openjdk-17-jre-headless cmd:mvn maven
    say "fetching the Apache Kafka broker jars (Maven Central; cached in .cache/kafka)"
    uv run --frozen python -m voxbus.devinfra fetch
  fi
  ensure_kustomize
  # the Node.js load generator (bench/loadgen): the soak's test and the benchmark suite drive it
  ensure_apt_packages cmd:node nodejs cmd:npm npm
  say "installing the load generator's packages (npm ci, bench/loadgen)"
  npm ci --prefix bench/loadgen --no-audit --no-fund --silent
fi
