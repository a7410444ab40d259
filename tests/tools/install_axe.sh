#!/usr/bin/env bash
# Install axe-core (the accessibility engine the browser tests inject) into the git-ignored
# .tools/ folder; nothing of it is committed:
#   .tools/axe/axe.min.js  - from the npm package axe-core@$AXE_VERSION
# Idempotent: does nothing when the right version is present. Usage: tests/tools/install_axe.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
AXE_VERSION=4.11.1
TARGET=.tools/axe/axe.min.js
STAMP=.tools/axe/VERSION

if [ -s "$TARGET" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$AXE_VERSION" ]; then
  echo "axe-core $AXE_VERSION already installed"
  exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "install_axe: npm is required" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "axe-core@$AXE_VERSION" >/dev/null)
tar -xzf "$work/axe-core-$AXE_VERSION.tgz" -C "$work"
mkdir -p "$(dirname "$TARGET")"
cp "$work/package/axe.min.js" "$TARGET.tmp"
mv "$TARGET.tmp" "$TARGET"
echo "$AXE_VERSION" > "$STAMP"
echo "axe-core $AXE_VERSION installed at $TARGET"
