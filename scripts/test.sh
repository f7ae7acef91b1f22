#!/usr/bin/env bash
# Install everything the test suite needs, then run every test. `.ci/run` calls exactly this.
#   - Debian packages (as root, when missing): chromium for the browser tests, postgresql for the
#     team-database tests; a throw-away PostgreSQL server is started on 127.0.0.1.
#   - One virtual environment (.venv, reused when present) with the package and its test extra.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${ACTIVELEARN_VENV:-.venv}

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || missing+=(postgresql)
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".[test]"

if [ -z "${ACTIVELEARN_TEST_PG_URL:-}" ] && ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1; then
  ACTIVELEARN_TEST_PG_URL=$(bash scripts/start_postgres.sh)
  export ACTIVELEARN_TEST_PG_URL
fi

"$VENV/bin/ruff" check .
"$VENV/bin/lint-imports"  # the layer contracts in pyproject.toml (ARCHITECTURE.md)
exec "$VENV/bin/python" -m pytest "$@"
