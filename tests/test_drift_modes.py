"""analyse() with proxies kube-proxy's rules do not describe (Cilium, userspace) and without rules."""

from __future__ import annotations

import json
from pathlib import Path

from kubectl_proxydoctor.analysis import analyse
from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.snapshot import NodeSnapshot

FIXTURES = Path(__file__).parent / "fixtures"
API = json.loads((FIXTURES / "iptables" / "healthy" / "api.json").read_text())

CILIUM = [
    {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "cilium", "namespace": "kube-system"},
        "spec": {},
    },
    {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cilium-config", "namespace": "kube-system"},
        "data": {"kube-proxy-replacement": "true"},
    },
]


def _cluster(extra: list[dict], drop_kube_proxy: bool = False) -> ClusterState:
    items = [
        i
        for i in API["items"]
        if not (
            drop_kube_proxy
            and i["kind"] in ("ConfigMap", "DaemonSet")
            and i["metadata"]["name"] == "kube-proxy"
        )
    ]
    return ClusterState.from_list({"kind": "List", "items": items + extra})


def test_cilium_owns_services_no_kube_proxy_drift() -> None:
    snapshot = NodeSnapshot.from_files({"meta.json": json.dumps({"node": "pdnode1"})})
    report = analyse(snapshot, _cluster(CILIUM, drop_kube_proxy=True))
    assert report.mode == "cilium"
    assert report.services == []
    assert not [f for f in report.findings if f.code in ("not-programmed", "stale-service")]
    assert any("Cilium" in n for n in report.notes)


def test_no_rules_at_all_means_every_service_not_programmed() -> None:
    """Rules read and empty: every service port is not programmed (the dumps are captured, empty)."""
    empty = {"iptables-nft-save.txt": "", "iptables-legacy-save.txt": "",
             "nft-ruleset.json": '{"nftables": []}'}
    snapshot = NodeSnapshot.from_files({**empty, "meta.json": json.dumps({"node": "pdnode1"})})
    report = analyse(snapshot, _cluster([]))
    assert {s.status for s in report.services} == {"not-programmed"}
    assert len(report.services) == 16
    assert report.exit_code == 1


def test_rules_not_captured_are_unknown_not_missing() -> None:
    """Issue 16 item 1: a capture without rule files (only meta.json / api.json) is not "no rules":
    one rules-unknown finding naming the missing files, no not-programmed flood, exit 3."""
    snapshot = NodeSnapshot.from_files({"meta.json": json.dumps({"node": "pdnode1"})})
    report = analyse(snapshot, _cluster([]))
    assert report.services == []
    assert [f.code for f in report.findings if f.severity == "error"] == []
    [unknown] = [f for f in report.findings if f.code == "rules-unknown"]
    assert "not captured" in unknown.message and "iptables-save.txt: not captured" in unknown.evidence[0]
    assert "pdnode1" in unknown.fix
    assert report.exit_code == 3


def test_unknown_node_name_is_noted() -> None:
    capture = FIXTURES / "iptables" / "healthy"
    snapshot = NodeSnapshot.load(capture)
    snapshot.meta.pop("node", None)
    cluster = _cluster([])
    cluster.nodes = cluster.nodes + [{"kind": "Node", "metadata": {"name": "other"}}]
    report = analyse(snapshot, cluster)
    assert report.node is None
    assert any("node name unknown" in n for n in report.notes)
    # which endpoints are local is unknown: Local-policy frontends are not compared, the rest are
    assert report.exit_code == 0
    assert [s.status for s in report.services] == ["ok"] * 16
    assert not [f for f in report.findings if f.code == "local-blackhole"]


def test_families_kube_proxy_runs() -> None:
    from kubectl_proxydoctor.analysis import proxied_families

    capture = FIXTURES / "iptables" / "healthy"
    snapshot = NodeSnapshot.load(capture)
    assert proxied_families(snapshot, [], "iptables", None, None) == {4, 6}  # both KUBE-SERVICES chains
    only_v4 = NodeSnapshot.from_files({"iptables-save.txt": snapshot.text("iptables-save.txt") or ""})
    assert proxied_families(only_v4, [], "iptables", None, None) == {4}
    nft = NodeSnapshot.load(FIXTURES / "nftables" / "healthy")
    assert proxied_families(nft, [], "nftables", None, None) == {4, 6}
    v6_node = _cluster([])
    v6_node.nodes = [
        {
            "kind": "Node",
            "metadata": {"name": "n6"},
            "status": {"addresses": [{"type": "InternalIP", "address": "fd00::1"}]},
        }
    ]
    assert proxied_families(NodeSnapshot(), [], "iptables", v6_node, "n6") == {6}


def test_dual_stack_service_missing_its_ipv6_half() -> None:
    """kube-proxy runs IPv6 here (ip6tables has KUBE-SERVICES) but programmed only the IPv4 half."""
    capture = FIXTURES / "iptables" / "healthy"
    doc = json.loads((capture / "api.json").read_text())
    for item in doc["items"]:
        if item["kind"] == "Service" and item["metadata"]["name"] == "web":
            item["spec"]["clusterIPs"] = ["10.96.100.10", "fd00:96::10"]
            item["spec"]["ipFamilies"] = ["IPv4", "IPv6"]
    report = analyse(NodeSnapshot.load(capture), ClusterState.from_list(doc))
    [web] = [s for s in report.services if s.name.service == "default/web"]
    assert web.status == "drift"  # the IPv4 half is programmed, the IPv6 half is not
    [missing] = [f for f in report.findings if f.code == "not-programmed"]
    assert missing.service == "default/web" and "fd00:96::10" in missing.message


def test_unreadable_rules_are_not_reported_as_missing() -> None:
    """A live run without root reads no rules: exit 3 and no not-programmed flood."""
    meta = {
        "node": "pdnode1",
        "sources": {
            "iptables-nft-save.txt": "unavailable: iptables-nft-save needs root (permission denied)",
            "ipvs": "unavailable: kernel has no IP_VS",
        },
    }
    snapshot = NodeSnapshot.from_files({"meta.json": json.dumps(meta)})
    report = analyse(snapshot, _cluster([]))
    assert report.exit_code == 3
    assert report.services == []
    assert not [f for f in report.findings if f.code == "not-programmed"]
    assert "needs root" in report.sources["iptables-nft-save.txt"]
    assert any("could not be read" in n for n in report.notes)
    # a missing IPVS kernel module is not a read failure
    meta["sources"] = {"ipvs": "unavailable: kernel has no IP_VS"}
    capture = FIXTURES / "iptables" / "healthy"
    files = {p.name: p.read_text() for p in capture.iterdir() if p.name != "meta.json"}
    healthy = NodeSnapshot.from_files({**files, "meta.json": json.dumps(meta)})
    assert analyse(healthy, _cluster([])).exit_code == 0
