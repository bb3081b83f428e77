#!/usr/bin/env bash
# Runs the original's Python client (PyPI) against a running ubdcc restapi.
#   UBDCC_RESTAPI_URL=http://127.0.0.1:42081 UBDCC_SIM_URL=http://127.0.0.1:42090 tests/compat/run.sh [pytest args]
# The virtualenv lives at ${UBDCC_COMPAT_VENV:-target/compat-venv} (relative to the current
# directory); it is created on first use. Exit code: pytest's.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${UBDCC_COMPAT_VENV:-target/compat-venv}"
python="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"

# No .pytest_cache or __pycache__ in the source tree.
export PYTHONDONTWRITEBYTECODE=1
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$here/test_cluster_client.py" "$@"
