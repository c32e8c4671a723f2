#!/usr/bin/env bash
# Installs the system programs the test suite drives for real (redis-server, PostgreSQL's
# initdb/pg_ctl for a throwaway server when none answers on 127.0.0.1:5432, Chromium),
# when they are missing and we may install them (root + apt). Never starts anything.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  need+=(postgresql)
fi
if [ "${TOKENWIRE_SKIP_BROWSER:-0}" != "1" ]; then
  [ -x /usr/bin/chromium ] || need+=(chromium)
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "warning: missing ${need[*]} and not root with apt; the tests needing them will be skipped" >&2
fi
