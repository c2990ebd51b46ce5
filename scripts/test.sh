#!/usr/bin/env bash
# Installs everything, then runs the checks and the whole test suite.
# PostgreSQL tests run when a server answers on 127.0.0.1:5432 (database "test"), or wherever
# INGESTD_TEST_DATABASE_URL already points; otherwise they are skipped with a message.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh

if [ -z "${INGESTD_TEST_DATABASE_URL:-}" ] && \
   .venv/bin/python - <<'PY' 2>/dev/null
import psycopg
psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres", connect_timeout=3).close()
PY
then
  export INGESTD_TEST_DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:5432/test"
fi

echo "== ruff"; .venv/bin/ruff check .
echo "== import layers"; .venv/bin/lint-imports
echo "== pytest"; exec .venv/bin/python -m pytest "$@"
