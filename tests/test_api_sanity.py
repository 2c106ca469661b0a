"""Issue 16 item 6: an API answer that cannot be the node's cluster (no Services, no
default/kubernetes, the node not among its Nodes) gives one finding, no false drift, and exit 3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubectl_proxydoctor.analysis import analyse
from kubectl_proxydoctor.cli import main
from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.collect.api import read_cluster
from kubectl_proxydoctor.snapshot import NodeSnapshot
from tests.api_fixtures import api_server, kube_api  # noqa: F401  (pytest fixtures)

FIXTURES = Path(__file__).parent / "fixtures"
HEALTHY = FIXTURES / "iptables" / "healthy"
API = json.loads((HEALTHY / "api.json").read_text())
DRIFT_CODES = {"stale-service", "stale-endpoint", "not-programmed", "missing-endpoint"}


def _without(pred) -> ClusterState:
    return ClusterState.from_list({**API, "items": [i for i in API["items"] if not pred(i)]})


def _codes(report) -> set[str]:
    return {f.code for f in report.findings}


def test_no_services_at_all_is_not_every_port_stale() -> None:
    report = analyse(NodeSnapshot.load(HEALTHY), _without(lambda i: i["kind"] == "Service"))
    assert "api-no-services" in _codes(report) and not _codes(report) & DRIFT_CODES
    assert report.services == [] and report.exit_code == 3
    assert report.findings[0].code == "api-no-services"  # a root cause comes first


def test_missing_default_kubernetes_is_a_partial_answer() -> None:
    cluster = _without(lambda i: i["kind"] == "Service" and i["metadata"]["name"] == "kubernetes")
    report = analyse(NodeSnapshot.load(HEALTHY), cluster)
    [finding] = [f for f in report.findings if f.code == "api-no-kubernetes-service"]
    assert "15 Services" in finding.message
    assert not _codes(report) & DRIFT_CODES and report.exit_code == 3


@pytest.mark.parametrize("fixture", ["iptables/healthy", "nftables/healthy", "ipvs/healthy"])
def test_node_name_not_in_the_api_is_not_stale_local_endpoints(fixture) -> None:
    snapshot = NodeSnapshot.load(FIXTURES / fixture)
    cluster = ClusterState.from_json_text((FIXTURES / fixture / "api.json").read_text())
    assert analyse(snapshot, cluster, "pdnode1").exit_code == 0  # the right name: healthy
    report = analyse(snapshot, cluster, "worker-9")
    [finding] = [f for f in report.findings if f.code == "node-not-in-api"]
    assert "'worker-9'" in finding.message and "--node-name pdnode1" in finding.fix
    assert not _codes(report) & DRIFT_CODES and report.exit_code == 3


def test_meta_json_node_not_in_the_api(tmp_path) -> None:
    snapshot = NodeSnapshot.load(HEALTHY)
    snapshot.meta["node"] = "vm-hostname"
    report = analyse(snapshot, ClusterState.from_list(API))
    [finding] = [f for f in report.findings if f.code == "node-not-in-api"]
    assert "meta.json" in finding.message and report.exit_code == 3


def test_live_api_without_the_node(kube_api) -> None:  # noqa: F811
    api = kube_api(HEALTHY / "api.json")
    cluster = read_cluster(kubeconfig=str(api.kubeconfig), node_name="worker-9")
    assert cluster.sources["get nodes/worker-9"] == "ok (not found)"
    report = analyse(NodeSnapshot.load(HEALTHY), cluster, "worker-9")
    assert "node-not-in-api" in _codes(report) and not _codes(report) & DRIFT_CODES
    assert report.exit_code == 3
    cluster = read_cluster(kubeconfig=str(api.kubeconfig), node_name="pdnode1")
    assert analyse(NodeSnapshot.load(HEALTHY), cluster, "pdnode1").exit_code == 0


def test_api_json_without_nodes_cannot_tell_and_compares() -> None:
    """A hand-made api.json without Nodes says nothing about the node name: compared as before."""
    report = analyse(NodeSnapshot.load(HEALTHY), _without(lambda i: i["kind"] == "Node"))
    assert "node-not-in-api" not in _codes(report)
    assert report.services and report.exit_code == 0


def test_cli_empty_api_json_exits_3(tmp_path, capsys) -> None:
    capture = tmp_path / "capture"
    capture.mkdir()
    for p in HEALTHY.iterdir():
        (capture / p.name).write_text(p.read_text())
    (capture / "api.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": []}))
    with pytest.raises(SystemExit) as exc:
        main(["check", "--from", str(capture)])
    out = capsys.readouterr().out
    assert exc.value.code == 3 and "api-no-services" in out and "stale-service" not in out
