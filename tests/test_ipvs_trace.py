"""trace on IPVS nodes: virtual-server lookup, scheduler outcomes, iptables masquerade and filters."""

from pathlib import Path

import pytest

from kubectl_proxydoctor.errors import UsageError
from kubectl_proxydoctor.model import Endpoint, Packet
from kubectl_proxydoctor.modes import trace_all
from kubectl_proxydoctor.modes.ipvs import trace
from kubectl_proxydoctor.snapshot import NodeSnapshot

FIX = Path(__file__).parent / "fixtures" / "ipvs"


@pytest.fixture
def snap():
    return NodeSnapshot.load(FIX / "healthy")


def _one(snap, packet):
    (result,) = trace(snap, packet)
    assert result.mode == "ipvs"
    return result


def test_cluster_ip_from_outside_is_balanced_and_masqueraded(snap):
    result = _one(snap, Packet("10.96.100.10", 80, "TCP", "172.30.0.2"))
    assert [(o.verdict, o.destination, o.masquerade) for o in result.outcomes] == [
        ("dnat", Endpoint("10.244.0.11", 8080), True), ("dnat", Endpoint("10.244.0.12", 8080), True),
        ("dnat", Endpoint("10.244.0.13", 8080), True)]
    assert all(o.probability == pytest.approx(1 / 3) for o in result.outcomes)
    assert {o.service.key for o in result.outcomes} == {"default/web:http/TCP"}
    chains = [s.chain for s in result.outcomes[0].path]
    assert chains[:3] == ["nat/PREROUTING", "nat/KUBE-SERVICES", "nat/KUBE-MARK-MASQ"]
    assert "ipvs" in chains and "ipvs/rr" in chains and "nat/KUBE-POSTROUTING" in chains
    ipvs_step = next(s for s in result.outcomes[0].path if s.chain == "ipvs")
    assert ipvs_step.rule == "TCP  10.96.100.10:80 rr" and "KUBE-CLUSTER-IP" in ipvs_step.why


def test_pod_to_service_masquerades_only_the_hairpin(snap):
    result = _one(snap, Packet("10.96.100.10", 80, "TCP", "10.244.0.11"))
    masq = {str(o.destination): o.masquerade for o in result.outcomes}
    assert masq == {"10.244.0.11:8080": True, "10.244.0.12:8080": False, "10.244.0.13:8080": False}
    hairpin = next(o for o in result.outcomes if str(o.destination) == "10.244.0.11:8080")
    assert any("KUBE-LOOP-BACK" in s.why for s in hairpin.path)


def test_node_port_per_node_address_and_local_policy(snap):
    cluster = _one(snap, Packet("172.30.0.1", 30080, "TCP", "172.30.0.2"))
    assert [(str(o.destination), o.masquerade) for o in cluster.outcomes] == [
        ("10.244.0.11:8080", True), ("10.244.0.12:8080", True)]
    assert cluster.outcomes[0].service.key == "default/web-np:http/TCP"
    local = _one(snap, Packet("10.244.0.1", 30081, "TCP", "172.30.0.2"))
    assert [(str(o.destination), o.masquerade) for o in local.outcomes] == [
        ("10.244.0.12:8080", False), ("10.244.0.13:8080", False)]  # client source kept


def test_load_balancer_source_ranges(snap):
    allowed = _one(snap, Packet("203.0.113.10", 80, "TCP", "172.30.0.9"))
    assert [o.verdict for o in allowed.outcomes] == ["dnat", "dnat"]
    denied = _one(snap, Packet("203.0.113.10", 80, "TCP", "192.0.2.1"))
    assert [o.verdict for o in denied.outcomes] == ["drop"]
    assert denied.outcomes[0].path[-1].chain == "filter/KUBE-SOURCE-RANGES-FIREWALL"


def test_unused_port_on_a_service_ip_is_rejected_by_kube_ipvs_filter(snap):
    result = _one(snap, Packet("10.96.100.10", 81, "TCP", "172.30.0.2"))
    assert [o.verdict for o in result.outcomes] == ["reject"]
    assert result.outcomes[0].path[-1].chain == "filter/KUBE-IPVS-FILTER"


def test_no_real_servers_and_all_weights_zero(snap):
    empty = _one(snap, Packet("10.96.100.14", 80, "TCP", "172.30.0.2"))
    assert [o.verdict for o in empty.outcomes] == ["reject"]
    assert any("ICMP port unreachable" in n for n in empty.notes)
    snap.files["ipvsadm.txt"] = snap.files["ipvsadm.txt"].replace(
        "TCP  10.96.100.20:80 rr\n  -> 10.244.0.11:8080            Masq    1",
        "TCP  10.96.100.20:80 rr\n  -> 10.244.0.11:8080            Masq    0")
    drained = _one(snap, Packet("10.96.100.20", 80, "TCP", "172.30.0.2"))
    assert [o.verdict for o in drained.outcomes] == ["reject"]
    assert any("every real server has weight 0" in n for n in drained.notes)


def test_weights_and_draining_real_server(snap):
    snap.files["ipvsadm.txt"] = snap.files["ipvsadm.txt"].replace(
        "TCP  10.96.100.10:80 rr\n", "TCP  10.96.100.10:80 wrr\n").replace(
        "TCP  10.96.100.10:80 wrr\n  -> 10.244.0.11:8080            Masq    1      0          0\n"
        "  -> 10.244.0.12:8080            Masq    1",
        "TCP  10.96.100.10:80 wrr\n  -> 10.244.0.11:8080            Masq    3      0          0\n"
        "  -> 10.244.0.12:8080            Masq    0")
    result = _one(snap, Packet("10.96.100.10", 80, "TCP", "172.30.0.2"))
    probs = {str(o.destination): o.probability for o in result.outcomes}
    assert probs == pytest.approx({"10.244.0.11:8080": 0.75, "10.244.0.12:8080": 0.0,
                                   "10.244.0.13:8080": 0.25})
    assert any("10.244.0.12:8080 has weight 0 (draining" in n for n in result.notes)


def test_persistence_and_non_local_destination(snap):
    sticky = _one(snap, Packet("10.96.100.13", 80, "TCP", "172.30.0.2"))
    assert any(n.startswith("persistent 600") for n in sticky.notes)
    elsewhere = _one(snap, Packet("10.96.200.1", 80, "TCP", "172.30.0.2"))
    assert [o.verdict for o in elsewhere.outcomes] == ["no-match"]
    assert any("not a local address" in n for n in elsewhere.notes)


def test_trace_all_reaches_ipvs_and_bad_address(snap):
    results = trace_all(snap, Packet("10.96.100.16", 53, "UDP", "172.30.0.2"), modes=("ipvs",))
    assert [r.mode for r in results] == ["ipvs"]
    assert [str(o.destination) for o in results[0].outcomes] == ["10.244.0.11:5353", "10.244.0.13:5353"]
    with pytest.raises(UsageError):
        trace(snap, Packet("not-an-ip", 80))


def test_no_ipvs_table_no_result():
    snap = NodeSnapshot.load(FIX.parent / "iptables" / "healthy")
    assert trace(snap, Packet("10.96.100.10", 80)) == []


def test_persistence_template_and_quiescent_server(snap):
    snap.files["ipvsadm.txt"] = snap.files["ipvsadm.txt"].replace(
        "TCP  10.96.100.13:80 rr persistent 600\n  -> 10.244.0.11:8080            Masq    1",
        "TCP  10.96.100.13:80 rr persistent 600\n  -> 10.244.0.11:8080            Masq    0")
    snap.files["sysctl.txt"] = "net.ipv4.vs.expire_quiescent_template = 0\n"
    result = _one(snap, Packet("10.96.100.13", 80, "TCP", "172.30.0.2"))
    assert [(str(o.destination), o.probability) for o in result.outcomes] == [
        ("10.244.0.13:8080", 1.0), ("10.244.0.11:8080", 0.0)]
    assert any("expire_quiescent_template is 0" in n for n in result.notes)
