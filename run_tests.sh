#!/usr/bin/env bash
# Runs every raft-kv test: formatting, lints, raft-core on wasm32, unit,
# scenario and simulation tests, storage tests, multi-process cluster tests,
# CLI tests and the browser end-to-end tests. Installs what it needs first
# (wasm32 target, the pinned wasm-bindgen-cli, Debian chromium and
# chromium-driver, promtool from Debian's prometheus package), so a fresh
# machine needs nothing else.
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n==> %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

step "toolchain: rustfmt, clippy, wasm32 target"
installed_components=$(rustup component list --installed 2>/dev/null || true)
for c in rustfmt clippy; do
    grep -q "^$c" <<<"$installed_components" || rustup component add "$c"
done
rustup target list --installed | grep -qx wasm32-unknown-unknown \
    || rustup target add wasm32-unknown-unknown

step "make and a C compiler (jemalloc and ring build C sources)"
if ! command -v make >/dev/null || ! command -v cc >/dev/null; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq make gcc >/dev/null
fi

step "browser: Debian chromium and chromium-driver"
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

step "promtool (Debian's prometheus package, unpacked, not installed as a service)"
promtool_dir="${XDG_CACHE_HOME:-$HOME/.cache}/raft-kv/prometheus"
if [ ! -x "$promtool_dir/usr/bin/promtool" ]; then
    tmp=$(mktemp -d)
    if ! (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1); then
        as_root apt-get update -qq
        (cd "$tmp" && apt-get download prometheus >/dev/null)
    fi
    mkdir -p "$promtool_dir"
    dpkg-deb -x "$tmp"/prometheus_*.deb "$promtool_dir"
    rm -rf "$tmp"
fi
export RAFT_KV_PROMTOOL="$promtool_dir/usr/bin/promtool"
"$RAFT_KV_PROMTOOL" --version | head -1

step "format"
cargo fmt --all -- --check

step "lints"
cargo clippy --workspace --all-targets -- -D warnings

step "raft-core builds for wasm32 (no IO, no clock, no threads)"
cargo build -p raft-core --target wasm32-unknown-unknown

step "dashboard bundle (wasm32 + pinned wasm-bindgen)"
./web/build.sh

step "tests (unit, scenario, simulation, storage, cluster, CLI, browser)"
RAFT_KV_REQUIRE_BROWSER=1 RAFT_KV_REQUIRE_PROMTOOL=1 cargo test --workspace --no-fail-fast

step "all tests passed"
