#!/usr/bin/env bash
# Builds web/ (the JS client and demo page) into src/tokenwire/static, which the wheel ships.
# Needs Node >= 20 and npm (only the npm registry, and only when web/node_modules is stale).
set -euo pipefail
cd "$(dirname "$0")/../web"
if [ ! -f package.json ]; then exit 0; fi
out=../src/tokenwire/static
if ! command -v npm >/dev/null 2>&1; then
  if [ -f "$out/index.html" ]; then
    echo "warning: npm not found; keeping the demo page already built in src/tokenwire/static" >&2
    exit 0
  fi
  echo "error: building the demo page needs Node.js >= 20 and npm (https://nodejs.org)" >&2
  exit 1
fi
stamp=node_modules/.tokenwire-installed
if [ ! -f "$stamp" ] || [ package.json -nt "$stamp" ] || [ package-lock.json -nt "$stamp" ]; then
  # npm ci refuses a lock that lacks the other platforms' entries of an optional peer
  # (cbor-extract, under @ai-sdk/workflow): npm install then installs from the same lock.
  npm ci --no-audit --no-fund --loglevel=silent \
    || npm install --no-audit --no-fund --no-save --loglevel=error
  touch "$stamp"
fi
npm run --silent build
