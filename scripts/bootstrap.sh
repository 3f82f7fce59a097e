#!/usr/bin/env bash
# Install what voxbus needs on a fresh Linux machine, then nothing else.
#   scripts/bootstrap.sh run   → uv and the Python environment (uv.lock)
#   scripts/bootstrap.sh test  → the same, plus redis-server, Java 17+ and Maven (Debian/Ubuntu
#                                packages), and the Apache Kafka broker jars from Maven Central.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.8
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

ensure_apt_packages() {
  local missing=()
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null 2>&1 || missing+=(maven)
  [ ${#missing[@]} -eq 0 ] && return
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing: ${missing[*]} — install them with your package manager (or set REDIS_URL and" \
         "KAFKA_BOOTSTRAP_SERVERS to running servers)" >&2
    exit 1
  fi
  say "installing ${missing[*]} (apt)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_uv
say "syncing the Python environment from uv.lock"
uv sync --frozen --quiet --compile-bytecode

if [ "$purpose" = test ]; then
  if [ -z "${REDIS_URL:-}" ] || [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
    ensure_apt_packages
  fi
  if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
    say "fetching the Apache Kafka broker jars (Maven Central; cached in .cache/kafka)"
    uv run --frozen python -m voxbus.devinfra fetch
  fi
fi
