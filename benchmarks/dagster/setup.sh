#!/usr/bin/env bash
# Create the Dagster benchmark virtualenv (separate from FlowStone's: Dagster is not one of
# its dependencies) with the pinned releases.
#
#   benchmarks/dagster/setup.sh                          # venv at /tmp/dagsterbench
#   DAGSTERBENCH_VENV=/tmp/db2 benchmarks/dagster/setup.sh
#
# Interpreter: DAGSTERBENCH_PYTHON if set, else the first Python 3.12 then 3.11 found as
# python3.12 / python3.11 on PATH or under $HOME/.pyenv/versions (the peers' venv uses 3.12).
#
# Pins: dagster-postgres must be the release built for the same dagster (0.29.N for
# 1.13.N: it requires dagster==1.13.N exactly; an unpinned install resolves to an old,
# broken pair), and SQLAlchemy below 2.1, which dagster's Postgres storage does not support.
# 1.13.27 is the newest dagster that has a matching dagster-postgres.
set -euo pipefail

VENV=${DAGSTERBENCH_VENV:-/tmp/dagsterbench}
PINS=(
  "dagster==1.13.27"
  "dagster-postgres==0.29.27"
  "sqlalchemy>=2.0,<2.1"
)

find_python() {
  local candidate
  for candidate in ${DAGSTERBENCH_PYTHON:-} python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python \
      python3.11 "$HOME"/.pyenv/versions/3.11*/bin/python; do
    if command -v "$candidate" >/dev/null 2>&1 \
        && "$candidate" -c 'import sys, venv; sys.exit(sys.version_info[:2] not in ((3, 11), (3, 12)))' >/dev/null 2>&1; then
      echo "$candidate"
      return
    fi
  done
  echo "no Python 3.11 or 3.12 found (set DAGSTERBENCH_PYTHON)" >&2
  exit 1
}

if [ ! -x "$VENV/bin/python" ]; then
  "$(find_python)" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "${PINS[@]}"
"$VENV/bin/python" -c 'import dagster, dagster_postgres, sqlalchemy; print("dagster", dagster.__version__, "dagster-postgres", dagster_postgres.__version__, "sqlalchemy", sqlalchemy.__version__)'
