#!/usr/bin/env bash
# Builds the dashboard into web/dist: the wasm bundle (release, size-optimized)
# plus the static files. The bundle goes to dist/pkg-<hash>/, named by its
# content (the server caches that directory as immutable; index.html, which
# names it, is revalidated on every load), and every text or wasm file gets a
# gzip twin (<file>.gz) that the server sends to browsers accepting gzip. Installs the pinned wasm-bindgen-cli only when the
# installed one differs from the crate version, so repeated runs cost nothing.
#
#   web/build.sh            # from anywhere
#   CARGO_TARGET_DIR=...    # honoured (default: <workspace>/target)
set -euo pipefail

WEB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$WEB_DIR/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
DIST="$WEB_DIR/dist"
BINDGEN_VERSION="0.2.130" # must equal the wasm-bindgen version pinned in web/Cargo.toml

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  echo "web/build.sh: adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

installed="$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)"
if [ "$installed" != "$BINDGEN_VERSION" ]; then
  echo "web/build.sh: installing wasm-bindgen-cli $BINDGEN_VERSION (found: ${installed:-none}); takes a few minutes once"
  # Not --locked: the CLI's lock file pins a webpki-roots release the registry lacks.
  cargo install wasm-bindgen-cli --version "=$BINDGEN_VERSION"
fi

# The wasm-release profile (workspace Cargo.toml): size-optimized, LTO, one
# codegen unit, panics abort; the server's release build is not affected.
echo "web/build.sh: cargo build -p web --target wasm32-unknown-unknown --profile wasm-release"
(cd "$ROOT" && cargo build -p web --target wasm32-unknown-unknown --profile wasm-release)

rm -rf "$DIST"
mkdir -p "$DIST/pkg"
wasm-bindgen --target web --no-typescript --remove-name-section --remove-producers-section --out-dir "$DIST/pkg" \
  "$TARGET_DIR/wasm32-unknown-unknown/wasm-release/web.wasm"
hash="$(cat "$DIST/pkg/web_bg.wasm" "$DIST/pkg/web.js" | sha256sum | cut -c1-12)"
mv "$DIST/pkg" "$DIST/pkg-$hash"
cp "$WEB_DIR"/static/* "$DIST/"
sed -i "s#\./pkg/web\.js#./pkg-$hash/web.js#" "$DIST/index.html"
grep -q "pkg-$hash/web.js" "$DIST/index.html" || { echo "web/build.sh: index.html does not import ./pkg/web.js" >&2; exit 1; }
find "$DIST" -type f \( -name '*.wasm' -o -name '*.js' -o -name '*.html' -o -name '*.css' \) -exec gzip -9 -k -n {} +

size="$(stat -c %s "$DIST/pkg-$hash/web_bg.wasm")"
gz="$(stat -c %s "$DIST/pkg-$hash/web_bg.wasm.gz")"
echo "web/build.sh: built $DIST (pkg-$hash/web_bg.wasm: $size bytes, $((size / 1024)) KiB; gzip $gz bytes, $((gz / 1024)) KiB)"
