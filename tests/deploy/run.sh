#!/usr/bin/env bash
# Validates the Helm chart and the plain manifests against the Kubernetes schemas and runs each
# role with the chart's environment on loopback:
#   UBDCC_BIN=target/debug/ubdcc tests/deploy/run.sh
# The virtualenv is ${UBDCC_DEPLOY_VENV:-target/deploy-venv}, created on first use.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${UBDCC_DEPLOY_VENV:-target/deploy-venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
export PYTHONDONTWRITEBYTECODE=1
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$here/test_deploy.py" "$@"
