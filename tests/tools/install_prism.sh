#!/usr/bin/env bash
# Install the offline Twilio API mock used by the SMS tests (nothing of it is committed):
#   .tools/prism/node_modules/.bin/prism  - npm @stoplight/prism-cli@5.14.2 (newer needs newer Node)
#   .tools/twilio-oai/twilio_api_v2010.json - Twilio's OpenAPI spec from @twilio/cli-core@9.0.0
# Idempotent: does nothing when both are present. Usage: tests/tools/install_prism.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
TOOLS=.tools
PRISM_VERSION=5.14.2
CORE_VERSION=9.0.0
PRISM_BIN="$TOOLS/prism/node_modules/.bin/prism"
SPEC="$TOOLS/twilio-oai/twilio_api_v2010.json"

command -v npm >/dev/null 2>&1 || { echo "install_prism: npm is required (Node >= 18)" >&2; exit 1; }
mkdir -p "$TOOLS"

if [ -x "$PRISM_BIN" ] && "$PRISM_BIN" --version 2>/dev/null | grep -qx "$PRISM_VERSION"; then
  echo "prism $PRISM_VERSION already installed"
else
  mkdir -p "$TOOLS/prism"
  [ -f "$TOOLS/prism/package.json" ] || echo '{"name":"haven-tools-prism","private":true}' > "$TOOLS/prism/package.json"
  npm install --prefix "$TOOLS/prism" --no-audit --no-fund --loglevel=error \
    "@stoplight/prism-cli@$PRISM_VERSION"
  "$PRISM_BIN" --version
fi

if [ -s "$SPEC" ]; then
  echo "Twilio OpenAPI spec already present"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "@twilio/cli-core@$CORE_VERSION" >/dev/null)
  tar -xzf "$work"/twilio-cli-core-"$CORE_VERSION".tgz -C "$work"
  mkdir -p "$(dirname "$SPEC")"
  cp "$work/package/src/services/twilio-api/twilio_api_v2010.json" "$SPEC.tmp"
  mv "$SPEC.tmp" "$SPEC"
  echo "Twilio OpenAPI spec installed at $SPEC"
fi
