#!/usr/bin/env bash
# Builds web/ (the JS client and demo page) into src/tokenwire/static, which the wheel ships.
set -euo pipefail
cd "$(dirname "$0")/../web"
if [ ! -f package.json ]; then exit 0; fi
stamp=node_modules/.tokenwire-installed
if [ ! -f "$stamp" ] || [ package.json -nt "$stamp" ] || [ package-lock.json -nt "$stamp" ]; then
  npm ci --no-audit --no-fund --loglevel=error
  touch "$stamp"
fi
npm run --silent build
