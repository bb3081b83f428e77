#!/usr/bin/env bash
# Checks the OpenAPI document, fuzzes a running restapi with schemathesis, and parses every
# role's /metrics with Prometheus' parser:
#   UBDCC_RESTAPI_URL=… UBDCC_MGMT_URL=… UBDCC_DCN_URL=… tests/openapi/run.sh
# The virtualenv is ${UBDCC_OPENAPI_VENV:-target/openapi-venv}, created on first use.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${UBDCC_OPENAPI_VENV:-target/openapi-venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt" pytest
export PYTHONDONTWRITEBYTECODE=1
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$here/test_api.py" "$@"
