"""IPVS -> programmed view, and relabelling with the API's service port names."""

import json
from pathlib import Path

import pytest

from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.formats.ipvs_table import RealServer, VirtualServer
from kubectl_proxydoctor.model import Endpoint
from kubectl_proxydoctor.modes import interpret_all
from kubectl_proxydoctor.modes.ipvs import interpret
from kubectl_proxydoctor.modes.ipvs.labels import relabel
from kubectl_proxydoctor.modes.ipvs.view import scheduler_probabilities
from kubectl_proxydoctor.snapshot import NodeSnapshot

FIX = Path(__file__).parent / "fixtures" / "ipvs"


def _view(name="healthy", drop=()):
    snap = NodeSnapshot.load(FIX / name)
    for f in drop:
        snap.files.pop(f, None)
    views = interpret(snap)
    assert len(views) == 1
    return snap, views[0]


def _frontends(view):
    return {f.address: f for port in view.ports.values() for f in port.frontends}


def test_frontend_kinds_policies_and_targets():
    _, view = _view()
    assert view.mode == "ipvs" and view.source == "ipvs"
    fronts = _frontends(view)
    assert fronts["10.96.100.10:80"].kind == "cluster-ip"
    assert [str(t.endpoint) for t in fronts["10.96.100.10:80"].targets] == [
        "10.244.0.11:8080", "10.244.0.12:8080", "10.244.0.13:8080"]
    web = fronts["10.96.100.10:80"].targets
    assert all(t.probability == pytest.approx(1 / 3) and t.weight == 1 for t in web)
    assert fronts["198.51.100.20:80"].kind == "external-ip"
    assert fronts["203.0.113.10:80"].kind == "load-balancer"
    assert fronts["172.30.0.1:30081(nodeport)"].kind == "node-port"
    assert fronts["172.30.0.1:30081(nodeport)"].policy == "local"
    assert fronts["10.244.0.1:30080(nodeport)"].policy == "cluster"
    assert fronts["10.96.100.13:80"].affinity_seconds == 600
    assert fronts["10.96.100.10:80"].affinity_seconds is None
    assert fronts["10.96.100.10:80"].scheduler == "rr"
    assert fronts["10.96.100.14:80"].targets == []
    # masquerade read from kube-proxy's nat rules
    assert fronts["10.96.100.10:80"].masquerade.startswith(
        "when the source is not in 10.244.0.0/16 (nat KUBE-SERVICES rule 3: KUBE-CLUSTER-IP)")
    assert fronts["10.244.0.1:30080(nodeport)"].masquerade.startswith("always (nat KUBE-NODE-PORT rule 1")
    assert fronts["172.30.0.1:30081(nodeport)"].masquerade.startswith("never for external clients")
    assert fronts["203.0.113.10:80"].masquerade.startswith("always (nat KUBE-LOAD-BALANCER")
    # loadBalancerSourceRanges from KUBE-LOAD-BALANCER-FW / -SOURCE-CIDR
    assert fronts["203.0.113.10:80"].source_ranges == ["172.30.0.0/24"]
    assert any("KUBE-LOAD-BALANCER-SOURCE-CIDR 203.0.113.10,tcp:80,172.30.0.0/24" in e
               for e in fronts["203.0.113.10:80"].evidence)
    assert fronts["198.51.100.20:80"].source_ranges == []
    assert any("TCP  10.96.100.13:80 rr persistent 600" in e for e in fronts["10.96.100.13:80"].evidence)
    # one port per NodePort, one frontend per node address
    nodeport = next(p for p in view.ports.values() if p.name.name == "nodeport:30080")
    assert sorted(f.ip for f in nodeport.frontends) == ["10.244.0.1", "172.30.0.1"]
    assert len(view.ports) == 21


def test_proc_only_gives_same_endpoints():
    _, listed = _view()
    snap = NodeSnapshot.load(FIX / "healthy")
    snap.files.pop("ipvsadm.txt")
    snap.files["kernel-config.txt"] += "CONFIG_HZ=1\n"
    (proc,) = interpret(snap)
    assert {k: p.all_endpoints for k, p in proc.ports.items()} == {
        k: p.all_endpoints for k, p in listed.ports.items()}
    assert _frontends(proc)["10.96.100.13:80"].affinity_seconds == 600


def test_kinds_guessed_without_ipsets():
    _, view = _view(drop=("ipset-save.txt",))
    fronts = _frontends(view)
    assert fronts["10.96.100.10:80"].kind == "cluster-ip"  # on kube-ipvs0
    assert fronts["172.30.0.1:30080(nodeport)"].kind == "node-port"  # a node address


def test_no_ipvs_table_means_no_view():
    snap = NodeSnapshot.load(FIX / "healthy")
    snap.files.pop("ipvsadm.txt")
    snap.files.pop("proc-net-ip_vs.txt")
    assert interpret(snap) == []
    empty = NodeSnapshot.from_files({"ipvsadm.txt": "IP Virtual Server version 1.2.1 (size=4096)\n"})
    assert interpret(empty) == []


def test_interpret_all_includes_ipvs():
    snap = NodeSnapshot.load(FIX / "healthy")
    try:
        views = interpret_all(snap, modes=("ipvs",))
    except ModuleNotFoundError:  # pragma: no cover
        pytest.skip("modes package not importable")
    assert [v.mode for v in views] == ["ipvs"]


def test_weights_and_draining():
    vs = VirtualServer("TCP", "10.0.0.1", 80, "rr", reals=[
        RealServer("10.1.0.1", 80, weight=1), RealServer("10.1.0.2", 80, weight=0),
        RealServer("10.1.0.3", 80, weight=5)])
    assert scheduler_probabilities(vs) == [0.5, 0.0, 0.5]  # rr: equal among weight > 0
    vs.scheduler = "wrr"
    assert scheduler_probabilities(vs) == pytest.approx([1 / 6, 0.0, 5 / 6])
    vs.reals = [RealServer("10.1.0.2", 80, weight=0)]
    assert scheduler_probabilities(vs) == [0.0]


@pytest.mark.parametrize("name", ["healthy", "stale-endpoint"])
def test_relabel_with_api_names_every_expected_port(name):
    snap, view = _view(name)
    cluster = ClusterState.from_json_text(snap.text("api.json"))
    named = relabel(view, cluster)
    expected = json.loads((FIX / name / "expected.json").read_text())
    assert {p.name.key for p in named.ports.values()} == set(expected["statuses"])
    lb = next(p for p in named.ports.values() if p.name.key == "default/lb:http/TCP")
    assert sorted(f.address for f in lb.frontends) == [
        "10.244.0.1:30082(nodeport)", "10.96.100.17:80", "172.30.0.1:30082(nodeport)", "203.0.113.10:80"]
    assert {f.kind for f in lb.frontends} == {"cluster-ip", "node-port", "load-balancer"}


def test_stale_endpoint_is_visible_in_the_view():
    snap, view = _view("stale-endpoint")
    named = relabel(view, ClusterState.from_json_text(snap.text("api.json")))
    port = next(p for p in named.ports.values() if p.name.key == "default/web-affinity:http/TCP")
    assert Endpoint("10.244.0.13", 8080) in port.endpoints  # IPVS still sends to it
    api = json.loads(snap.text("api.json"))
    listed = {a for item in api["items"] if item["kind"] == "EndpointSlice"
              and item["metadata"].get("labels", {}).get("kubernetes.io/service-name") == "web-affinity"
              for ep in item.get("endpoints") or [] for a in ep["addresses"]}
    assert "10.244.0.13" not in listed


def test_relabel_keeps_leftovers_and_fixes_kinds():
    snap, view = _view(drop=("ipset-save.txt",))
    api = json.loads(snap.text("api.json"))
    api["items"] = [i for i in api["items"] if i["metadata"]["name"] != "ext"]
    named = relabel(view, ClusterState.from_list(api))
    keys = {p.name.key for p in named.ports.values()}
    # no Service claims them (issue 16: keys were "/10.96.100.18:80:/TCP")
    assert "10.96.100.18:80/TCP" in keys and "198.51.100.20:80/TCP" in keys
    lb = next(p for p in named.ports.values() if p.name.key == "default/lb:http/TCP")
    assert {f.kind for f in lb.frontends} == {"cluster-ip", "node-port", "load-balancer"}


def test_masquerade_follows_the_rules_that_are_there():
    snap = NodeSnapshot.load(FIX / "healthy")
    for name in ("iptables-save.txt", "iptables-nft-save.txt"):  # masqueradeAll: no -s on the rule
        snap.files[name] = snap.files[name].replace("-A KUBE-SERVICES ! -s 10.244.0.0/16 -m comment",
                                                    "-A KUBE-SERVICES -m comment")
    (view,) = interpret(snap)
    assert _frontends(view)["10.96.100.10:80"].masquerade.startswith("always (nat KUBE-SERVICES rule 3")
    for name in ("iptables-save.txt", "iptables-nft-save.txt"):
        snap.files.pop(name)
    (bare,) = interpret(snap)
    assert _frontends(bare)["10.96.100.10:80"].masquerade.startswith("unknown (no iptables dump")
