"""The IPVS view through the whole analysis (relabelled with the API, compared by the drift checks):
the fixtures' expected.json statuses, and drift that only the IPVS tables show."""

import json
from pathlib import Path

import pytest

from kubectl_proxydoctor.analysis import analyse
from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.snapshot import NodeSnapshot

FIX = Path(__file__).parent / "fixtures" / "ipvs"


def _report(snap):
    return analyse(snap, ClusterState.from_json_text(snap.text("api.json")), snap.node)


def _statuses(report):
    return {s.name.key: s.status for s in report.services}


@pytest.mark.parametrize("name", ["healthy", "stale-endpoint"])
def test_expected_statuses(name):
    snap = NodeSnapshot.load(FIX / name)
    expected = json.loads((FIX / name / "expected.json").read_text())
    assert _statuses(_report(snap)) == expected["statuses"]


def test_stale_endpoint_finding_names_the_real_server():
    report = _report(NodeSnapshot.load(FIX / "stale-endpoint"))
    stale = [f for f in report.findings if f.code == "stale-endpoint"]
    assert [(f.service, f.port) for f in stale] == [("default/web-affinity", "http")]
    assert "10.244.0.13:8080" in stale[0].message
    assert any("-> 10.244.0.13:8080" in e for e in stale[0].evidence)


def test_dropped_source_range_is_drift():
    snap = NodeSnapshot.load(FIX / "healthy")
    snap.files["ipset-save.txt"] = snap.files["ipset-save.txt"].replace(
        "add KUBE-LOAD-BALANCER-SOURCE-CIDR 203.0.113.10,tcp:80,172.30.0.0/24\n",
        "add KUBE-LOAD-BALANCER-SOURCE-CIDR 203.0.113.10,tcp:80,10.0.0.0/8\n")
    report = _report(snap)
    assert _statuses(report)["default/lb:http/TCP"] == "drift"
    assert any(f.code == "source-ranges-mismatch" for f in report.findings)


def test_leftover_virtual_server_after_service_deletion():
    snap = NodeSnapshot.load(FIX / "healthy")
    api = json.loads(snap.text("api.json"))
    api["items"] = [i for i in api["items"] if i["metadata"]["name"] != "web"]
    snap.files["api.json"] = json.dumps(api)
    report = _report(snap)
    assert "default/web:http/TCP" not in _statuses(report)
    stale = [f for f in report.findings if f.code == "stale-service"]
    assert len(stale) == 1 and "10.96.100.10:80" in stale[0].message  # IPVS has no names: the frontend
    assert _statuses(report)["10.96.100.10:80/TCP"] == "not-expected"  # issue 16: was "/10.96.100.10:80:/TCP"


def test_internal_traffic_policy_local_with_a_local_endpoint_is_not_drift():
    snap = NodeSnapshot.load(FIX / "healthy")
    api = json.loads(snap.text("api.json"))
    for item in api["items"]:
        if item["kind"] == "EndpointSlice" and \
                item["metadata"]["labels"].get("kubernetes.io/service-name") == "itp-local":
            item["endpoints"][0].update(nodeName="pdnode1", addresses=["10.244.0.12"])
    snap.files["api.json"] = json.dumps(api)
    local_only = "TCP  10.96.100.19:80 rr\n  -> 10.244.0.12:8080            Masq    1      0          0\n"
    snap.files["ipvsadm.txt"] = snap.files["ipvsadm.txt"].replace("TCP  10.96.100.19:80 rr\n", local_only)
    report = _report(snap)
    assert _statuses(report)["default/itp-local:http/TCP"] == "ok"
    assert not [f for f in report.findings if f.code == "traffic-policy-mismatch"]
    # a remote endpoint programmed for an internalTrafficPolicy Local ClusterIP is stale
    snap.files["ipvsadm.txt"] = snap.files["ipvsadm.txt"].replace(
        local_only, local_only + "  -> 10.244.1.99:8080            Masq    1      0          0\n")
    report = _report(snap)
    assert _statuses(report)["default/itp-local:http/TCP"] == "drift"
    assert any(f.code == "stale-endpoint" and "10.244.1.99:8080" in f.message for f in report.findings)


def test_terminating_endpoint_at_weight_zero_is_not_drift():
    snap = NodeSnapshot.load(FIX / "healthy")
    snap.files["ipvsadm.txt"] = snap.files["ipvsadm.txt"].replace(
        "TCP  10.96.100.20:80 rr\n",
        "TCP  10.96.100.20:80 rr\n  -> 10.244.0.12:8080            Masq    0      2          0\n")
    report = _report(snap)
    assert _statuses(report)["default/terminating:http/TCP"] == "ok"
    assert any(f.code == "ipvs-draining" and "10.244.0.12:8080" in f.message for f in report.findings)
