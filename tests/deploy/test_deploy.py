"""The deployment files, checked without a Kubernetes cluster or Docker.

- The Helm chart renders (defaults and the Deployment variants), and every object validates
  against the Kubernetes schemas; every container has readiness and liveness probes.
- `deploy/k8s/ubdcc.yaml` is the chart's default rendering (only the cluster secret fixed).
- Each role started with exactly the environment and arguments the chart gives it (ports and
  mgmt's address mapped to loopback) passes its probe, and the pods find each other: mgmt lists
  restapi and the DCN, and a book created through restapi is served.

Environment: `UBDCC_BIN` (the ubdcc binary). Unset: the role test is skipped.
"""

import base64
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import helm_python
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "ubdcc"
MANIFESTS = ROOT / "deploy" / "k8s" / "ubdcc.yaml"
KUBE_VERSION = "1.33.0"
FIXED_SECRET = "CHANGE-ME-to-a-long-random-string"
HEADER = "# Generated from deploy/helm/ubdcc with its default values (tests/deploy checks it).\n# Change the cluster secret before applying (pods refuse this placeholder): kubectl apply -n ubdcc -f deploy/k8s/ubdcc.yaml\n"


def render(values=None):
    chart = helm_python.Chart.load(str(CHART))
    try:
        rendered = chart.render(values or {}, name="ubdcc", namespace="ubdcc", is_install=True)
    finally:
        chart.close()
    documents = []
    for path in sorted(rendered):
        documents.extend(d for d in yaml.safe_load_all(rendered[path]) if d)
    return documents


def containers(documents):
    for document in documents:
        spec = document.get("spec", {}).get("template", {}).get("spec", {})
        for container in spec.get("containers", []):
            yield document, container


@pytest.mark.parametrize(
    "values",
    [{}, {"dcn": {"coresPerNode": 2, "nodeCount": 3}, "restapi": {"perNode": 2}}, {"apiToken": "t", "dcn": {"replicas": 4}}],
)
def test_the_chart_renders_valid_kubernetes_objects_with_probes(values):
    documents = render(values)
    kinds = sorted(d["kind"] for d in documents)
    assert kinds.count("PodDisruptionBudget") == 2, kinds
    for document in documents:
        kubernetes_validate.validate(document, KUBE_VERSION, strict=True)
    for document, container in containers(documents):
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["path"] == "/test", (document["metadata"]["name"], probe)
    if values.get("dcn", {}).get("coresPerNode") == 2:
        dcn = next(d for d in documents if d["metadata"]["name"] == "ubdcc-dcn" and d["kind"] == "Deployment")
        assert dcn["spec"]["replicas"] == 6


def test_the_mgmt_service_name_is_a_value():
    documents = render({"name": {"mgmt": "my-mgmt"}})
    service = next(d for d in documents if d["kind"] == "Service" and d["spec"]["type"] == "NodePort")
    assert service["metadata"]["name"] == "my-mgmt"
    for _, container in containers(documents):
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["UBDCC_MGMT_URL"] == "http://my-mgmt.ubdcc.svc.cluster.local:4280"


def test_the_plain_manifests_are_the_charts_defaults():
    expected = HEADER + yaml.safe_dump_all(render({"clusterSecret": FIXED_SECRET}), sort_keys=False)
    if os.environ.get("UBDCC_WRITE_MANIFESTS") == "1":
        MANIFESTS.write_text(expected)
    assert MANIFESTS.read_text() == expected, "run UBDCC_WRITE_MANIFESTS=1 tests/deploy/run.sh to regenerate"
    for document in yaml.safe_load_all(MANIFESTS.read_text()):
        kubernetes_validate.validate(document, KUBE_VERSION, strict=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=2):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def wait(check, what, limit=30):
    started = time.time()
    while True:
        try:
            result = check()
            if result:
                return result
        except OSError:
            pass
        assert time.time() - started < limit, f"not within {limit}s: {what}"
        time.sleep(0.2)


@pytest.mark.skipif(not os.environ.get("UBDCC_BIN"), reason="UBDCC_BIN is not set")
def test_each_role_runs_with_the_charts_environment_and_the_pods_find_each_other():
    binary = os.environ["UBDCC_BIN"]
    workdir = Path(tempfile.mkdtemp(prefix="ubdcc-deploy-"))
    cluster = f"deploy{os.getpid()}"
    sim_port, mgmt_port = free_port(), free_port()
    processes = []
    try:
        sim = subprocess.Popen([binary, "sim", "--port", str(sim_port), "--markets", "2"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(sim)
        documents = render({"cluster": cluster, "clusterSecret": "s3cret-s3cret-s3cret",
                            "dcn": {"exchangeEndpoints": [f"binance.com=http://127.0.0.1:{sim_port}"]}})
        secret = next(d for d in documents if d["kind"] == "Secret")
        ports = {}
        for role in ("mgmt", "restapi", "dcn"):
            document, container = next((d, c) for d, c in containers(documents) if c["name"] == role)
            port = mgmt_port if role == "mgmt" else free_port()
            ports[role] = port
            env = dict(os.environ)
            for entry in container["env"]:
                value = entry.get("value")
                source = entry.get("valueFrom", {})
                if "fieldRef" in source:
                    value = {"spec.nodeName": "node-1", "metadata.name": f"{role}-0",
                             "status.podIP": "127.0.0.1"}[source["fieldRef"]["fieldPath"]]
                if "secretKeyRef" in source:
                    key = source["secretKeyRef"]["key"]
                    encoded = secret["data"].get(key)
                    if encoded is None:
                        continue
                    value = base64.b64decode(encoded).decode()
                env[entry["name"]] = value
            # Loopback mapping: each role its own port, mgmt's Service name is 127.0.0.1.
            env["UBDCC_HOST"] = "127.0.0.1"
            env["UBDCC_PORT"] = str(port)
            env["UBDCC_MGMT_URL"] = f"http://127.0.0.1:{mgmt_port}"
            if role == "mgmt":
                env["UBDCC_DATA_DIR"] = str(workdir / "data")
            log = open(workdir / f"{role}.log", "w")
            processes.append(subprocess.Popen([binary, *container["args"]], env=env, stdout=log, stderr=log))
            probe = container["readinessProbe"]["httpGet"]["path"]
            answer = wait(lambda: get(f"http://127.0.0.1:{port}{probe}"), f"{role} probe")
            assert answer["result"] == "OK", answer
        mgmt = f"http://127.0.0.1:{mgmt_port}"
        request = urllib.request.Request(f"{mgmt}/get_cluster_info",
                                         headers={"X-Ubdcc-Cluster-Secret": "s3cret-s3cret-s3cret"})
        def registered():
            with urllib.request.urlopen(request, timeout=2) as response:
                # #1014 (no `db`) while mgmt's recovery window runs.
                pods = json.loads(response.read()).get("db", {}).get("pods", {})
            roles = sorted(p["ROLE"] for p in pods.values())
            return roles == ["ubdcc-dcn", "ubdcc-restapi"] and pods
        pods = wait(registered, "restapi and DCN registered")
        assert {p["NODE"] for p in pods.values()} == {"node-1"}
        restapi = f"http://127.0.0.1:{ports['restapi']}"
        created = get(f"{restapi}/create_depthcache?exchange=binance.com&market=SIM0USDT")
        assert created["result"] == "OK", created
        served = wait(lambda: (a := get(f"{restapi}/get_asks?exchange=binance.com&market=SIM0USDT&limit_count=1"))
                      and a["result"] == "OK" and a, "book served")
        assert len(served["asks"]) == 1
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
