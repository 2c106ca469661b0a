"""The nftables interpreter on every real capture: endpoints equal what kube-proxy was given."""

from __future__ import annotations

import pytest

from kubectl_proxydoctor.model import Endpoint, ServicePortName
from kubectl_proxydoctor.modes import interpret_all
from kubectl_proxydoctor.modes.nftables import interpret
from kubectl_proxydoctor.modes.nftables.interpreter import chain_hash, parse_chain_name, table_problems
from kubectl_proxydoctor.snapshot import NodeSnapshot
from tests.test_nftables_expect import FIXTURES, expected_endpoints, fixture_dirs

# drift captures: what SCENARIO.md says differs from the current API objects
DRIFT = {
    "stale-endpoint": {"default/web:http/TCP": {"extra": {"10.244.0.12:8080"}}},
    "new-service": {"default/late:http/TCP": {"absent": True}},
}


def _ports(snapshot: NodeSnapshot) -> dict[str, object]:
    views = [v for v in interpret(snapshot) if v.source == "nftables"]
    assert len(views) == 1
    return {name.key: port for (name, fam), port in views[0].ports.items()}


@pytest.mark.parametrize("capture", fixture_dirs(), ids=lambda p: p.name)
def test_endpoints_equal_what_kube_proxy_was_given(capture):
    snapshot = NodeSnapshot.load(capture)
    ports = _ports(snapshot)
    expected = expected_endpoints(snapshot.text("api.json"))
    drift = DRIFT.get(capture.name, {})
    for key, exp in expected.items():
        d = drift.get(key, {})
        if d.get("absent"):
            assert key not in ports, key
            continue
        assert key in ports, f"{key} not programmed"
        port = ports[key]
        got = {str(e) for e in port.endpoints}
        assert got == exp["cluster"] | d.get("extra", set()), key
        cluster_fe = [f for f in port.frontends if f.kind == "cluster-ip"]
        assert len(cluster_fe) == 1
        if not exp["cluster"]:
            assert cluster_fe[0].no_endpoints == ("drop" if exp["itp_local"] else "reject"), key
        else:
            total = sum(t.probability for t in cluster_fe[0].targets)
            assert total == pytest.approx(1.0), key
        for fe in port.frontends:
            if fe.kind == "node-port":
                assert fe.port == exp["node_port"]
                want = exp["local"] if exp["etp_local"] else exp["cluster"]
                assert {str(e) for e in fe.endpoints} == want | d.get("extra", set())
                assert fe.policy == ("local" if exp["etp_local"] else "cluster")
    # nothing programmed that the API does not know, except the drift
    assert set(ports) - set(expected) == set()
    assert table_problems(views_raw(snapshot), "ip") == []


def views_raw(snapshot):
    return next(v.raw for v in interpret(snapshot) if v.source == "nftables")


def test_healthy_details():
    snapshot = NodeSnapshot.load(FIXTURES / "healthy")
    ports = _ports(snapshot)
    lb = ports["default/lb:http/TCP"]
    kinds = {f.kind: f for f in lb.frontends}
    assert set(kinds) == {"cluster-ip", "load-balancer", "node-port"}
    assert kinds["load-balancer"].ip == "203.0.113.10"
    assert kinds["load-balancer"].source_ranges == ["172.30.0.0/24", "203.0.113.10"]
    assert kinds["load-balancer"].masquerade.startswith("always")
    assert kinds["cluster-ip"].masquerade == "from sources outside 10.244.0.0/16 (off-cluster traffic)"
    assert any("firewall-D2RGPZ6L" in e for e in kinds["load-balancer"].evidence)
    ext = {f.kind: f for f in ports["default/ext:http/TCP"].frontends}
    assert ext["external-ip"].ip == "198.51.100.20"
    aff = ports["default/web-affinity:http/TCP"].frontends[0]
    assert aff.affinity_seconds == 600
    web = ports["default/web:http/TCP"].frontends[0]
    assert [round(t.probability, 6) for t in web.targets] == [round(1 / 3, 6)] * 3
    assert any("dnat to 10.244.0.12:8080" in e for t in web.targets for e in t.evidence)
    element = "10.96.100.10 . tcp . 80 : goto service-SUSTUHLJ-default/web/tcp/http"
    assert f"map service-ips: {element}" in web.evidence
    local = {f.kind: f for f in ports["default/web-local:http/TCP"].frontends}["node-port"]
    assert local.policy == "local" and local.masquerade.startswith("only traffic from this node")
    dns = ServicePortName("default", "dns", "dns", "UDP")
    assert ports[dns.key].frontends[0].targets[0].endpoint == Endpoint("10.244.0.11", 5353)


def test_views_through_mode_dispatch():
    snapshot = NodeSnapshot.load(FIXTURES / "healthy")
    views = [v for v in interpret_all(snapshot, modes=("nftables",))]
    assert [v.source for v in views] == ["nftables", "nftables-ip6"]
    assert views[0].mode == "nftables" and views[0].endpoint_count > 0
    assert views[1].ports == {}


def test_chain_names_and_hashes():
    name = parse_chain_name("endpoint-ZTRZVRFS-default/web/tcp/http__10.244.0.12/8080")
    assert name is not None and name.prefix == "endpoint" and name.endpoint == "10.244.0.12/8080"
    assert name.name == ServicePortName("default", "web", "http", "TCP")
    assert name.hash_ok
    assert parse_chain_name("service-SUSTUHLJ-default/web/tcp/http").hash_ok
    assert chain_hash("ns1/svc1/tcp/p80") == "ULMVA6XW"  # from kube-proxy's own unit tests
    assert parse_chain_name("services") is None
    assert parse_chain_name("service-ABCDEFGH-only/three/parts") is None
    assert not parse_chain_name("service-AAAAAAAA-default/web/tcp/http").hash_ok


def test_no_nft_capture_means_no_view():
    assert interpret(NodeSnapshot.from_files({"iptables-save.txt": ""})) == []


def test_views_are_interpreted_once_per_snapshot_and_evidence_renders_when_read():
    from kubectl_proxydoctor.modes.nftables.interpreter import NftFrontend, NftTarget
    from kubectl_proxydoctor.snapshot import NodeSnapshot

    snap = NodeSnapshot.load(FIXTURES / "stale-endpoint")
    views = interpret(snap)
    assert [id(v) for v in interpret(snap)] == [id(v) for v in views]  # cached
    fe = next(f for p in views[0].ports.values() for f in p.frontends if f.targets)
    assert isinstance(fe, NftFrontend) and isinstance(fe.targets[0], NftTarget)
    assert fe.pending  # nothing rendered yet
    lines = fe.evidence
    assert lines and all(isinstance(line, str) for line in lines) and not fe.pending
    assert fe.targets[0].evidence[-1].startswith("endpoint-") and " dnat to " in fe.targets[0].evidence[-1]
    snap.files["nft-ruleset.json"] += " "  # a replaced capture file is interpreted again
    assert interpret(snap)[0] is not views[0]
