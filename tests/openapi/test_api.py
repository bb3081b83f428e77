"""The public API's description and every role's /metrics, checked from outside.

- `docs/openapi.json` is a valid OpenAPI 3 document and is what restapi serves at `/openapi.json`.
- A schema-driven fuzz run (schemathesis) against the live restapi finds no server error (5xx)
  and no answer that breaks the documented schema.
- `/metrics` of mgmt, restapi and a DCN parses with Prometheus' own text-format parser and has
  the families each role promises.

Environment: `UBDCC_RESTAPI_URL`, `UBDCC_MGMT_URL`, `UBDCC_DCN_URL` (a running cluster with at
least one synced book). Unset: skipped.
"""

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

RESTAPI = os.environ.get("UBDCC_RESTAPI_URL")
MGMT = os.environ.get("UBDCC_MGMT_URL")
DCN = os.environ.get("UBDCC_DCN_URL")
pytestmark = pytest.mark.skipif(not (RESTAPI and MGMT and DCN), reason="no cluster given")
DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def fetch(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def test_the_document_is_valid_openapi_and_is_what_restapi_serves():
    stored = json.loads(DOCUMENT.read_text())
    validate(stored)
    assert json.loads(fetch(f"{RESTAPI}/openapi.json")) == stored


def test_fuzzing_the_api_finds_no_server_error_and_no_schema_violation():
    command = [
        str(Path(sys.executable).parent / "schemathesis"), "run", f"{RESTAPI}/openapi.json",
        "--checks", "not_a_server_error,response_schema_conformance,content_type_conformance",
        "--max-examples", "30", "--workers", "1", "--generation-database", "none",
        "--phases", "examples,coverage,fuzzing",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def families(url):
    return {family.name: family for family in text_string_to_metric_families(fetch(f"{url}/metrics"))}


@pytest.mark.parametrize(
    "url_name, expected",
    [
        ("RESTAPI", ["ubdcc_http_requests", "ubdcc_http_request_duration_seconds", "ubdcc_restapi_reads",
                     "ubdcc_shm_read_retries"]),
        ("MGMT", ["ubdcc_http_requests", "ubdcc_replicas", "ubdcc_depthcaches", "ubdcc_pod_heartbeat_age_seconds"]),
        ("DCN", ["ubdcc_http_requests", "ubdcc_book_status", "ubdcc_book_resyncs", "ubdcc_book_gaps",
                 "ubdcc_book_updates", "ubdcc_book_age_seconds", "ubdcc_segment_heartbeat_age_seconds",
                 "ubdcc_snapshot_downloads", "ubdcc_snapshot_weight", "ubdcc_snapshot_rejections"]),
    ],
)
def test_metrics_parse_and_have_every_family(url_name, expected):
    url = {"RESTAPI": RESTAPI, "MGMT": MGMT, "DCN": DCN}[url_name]
    fetch(f"{url}/test")  # at least one request to count
    found = families(url)
    missing = [name for name in expected if name not in found]
    assert not missing, f"{url_name} lacks {missing}; has {sorted(found)}"
    if url_name == "DCN":
        synced = [s for s in found["ubdcc_book_status"].samples if s.labels.get("status") == "synced"]
        assert synced, "a synced book is reported"
        weight = found["ubdcc_snapshot_weight"].samples[0].value
        assert weight > 0, "snapshots were downloaded and their weight counted"
    if url_name == "MGMT":
        running = [s for s in found["ubdcc_replicas"].samples if s.labels["status"] == "running"]
        assert running and running[0].value >= 1
