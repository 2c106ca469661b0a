"""expected.py mirrors kube-proxy v1.30: which Services, frontends, and endpoint sets per policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.errors import ParseError
from kubectl_proxydoctor.expected import expected_for_node
from kubectl_proxydoctor.model import Endpoint, ServicePortName

NODE = "node-a"
FIXTURES = Path(__file__).parent / "fixtures"


def svc(
    name: str,
    ns: str = "default",
    *,
    labels: dict | None = None,
    annotations: dict | None = None,
    status: dict | None = None,
    **spec,
) -> dict:
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("clusterIP", "10.96.0.10")
    spec.setdefault("ports", [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}])
    meta = {"name": name, "namespace": ns, "labels": labels or {}, "annotations": annotations or {}}
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec, "status": status or {}}


def ep(
    ip: str,
    node: str | None = NODE,
    ready: bool | None = True,
    serving: bool | None = None,
    terminating: bool | None = None,
    zones: list[str] | None = None,
) -> dict:
    cond = {
        k: v
        for k, v in (("ready", ready), ("serving", serving), ("terminating", terminating))
        if v is not None
    }
    out: dict = {"addresses": [ip], "conditions": cond}
    if node is not None:
        out["nodeName"] = node
    if zones is not None:
        out["hints"] = {"forZones": [{"name": z} for z in zones]}
    return out


def eps(
    service: str,
    endpoints: list[dict],
    name: str | None = None,
    ns: str = "default",
    ports: list[dict] | None = None,
    address_type: str = "IPv4",
    labels: dict | None = None,
) -> dict:
    meta = {
        "name": name or f"{service}-abc",
        "namespace": ns,
        "labels": {"kubernetes.io/service-name": service, **(labels or {})},
    }
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": meta,
        "addressType": address_type,
        "endpoints": endpoints,
        "ports": ports if ports is not None else [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


def node(name: str = NODE, zone: str | None = "zone-a") -> dict:
    labels = {"topology.kubernetes.io/zone": zone} if zone else {}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}


def expect(*items: dict, node_name: str | None = NODE):
    state = ClusterState.from_list({"kind": "List", "items": [node(), *items]})
    return expected_for_node(state, node_name)


def only(result):
    assert len(result.ports) == 1, result.ports
    return next(iter(result.ports.values()))


def names(endpoints: list[Endpoint]) -> list[str]:
    return [str(e) for e in endpoints]


# -- which services ---------------------------------------------------------------------------------


def test_skipped_services() -> None:
    result = expect(
        svc("headless", clusterIP="None"),
        svc("extname", type="ExternalName", clusterIP=None, externalName="db.example.com"),
        svc("other-proxy", labels={"service.kubernetes.io/service-proxy-name": "other"}),
        svc("headless-label", labels={"service.kubernetes.io/headless": ""}),
        svc("web"),
    )
    assert set(result.skipped) == {
        "default/headless",
        "default/extname",
        "default/other-proxy",
        "default/headless-label",
    }
    assert [n.service for n, _ in result.ports] == ["default/web"]
    assert "service-proxy-name=other" in result.skipped["default/other-proxy"]


def test_families_follow_cluster_ips() -> None:
    result = expect(
        svc(
            "dual",
            clusterIP="10.96.0.5",
            clusterIPs=["10.96.0.5", "fd00::5"],
            externalIPs=["198.51.100.1", "2001:db8::1"],
        ),
        eps("dual", [ep("10.0.0.1")], name="dual-v4"),
        eps("dual", [ep("fd01::1")], name="dual-v6", address_type="IPv6"),
    )
    name = ServicePortName("default", "dual", "http", "TCP")
    v4, v6 = result.port(name, 4), result.port(name, 6)
    assert v4.cluster_ip == "10.96.0.5" and v6.cluster_ip == "fd00::5"
    assert v4.external_ips == ["198.51.100.1"] and v6.external_ips == ["2001:db8::1"]
    assert names(v4.cluster_endpoints) == ["10.0.0.1:8080"]
    assert names(v6.cluster_endpoints) == ["[fd01::1]:8080"]
    only_v4 = expect(svc("v4"), eps("v4", [ep("10.0.0.1")]), node_name=NODE)
    assert {fam for _, fam in only_v4.ports} == {4}


# -- frontends --------------------------------------------------------------------------------------


def test_load_balancer_frontends_and_ip_mode_proxy() -> None:
    lb = svc(
        "lb",
        type="LoadBalancer",
        externalTrafficPolicy="Cluster",
        ports=[{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"}],
        loadBalancerSourceRanges=["172.30.0.0/24", "2001:db8::/64"],
        status={
            "loadBalancer": {
                "ingress": [
                    {"ip": "203.0.113.10"},
                    {"ip": "203.0.113.11", "ipMode": "Proxy"},
                    {"hostname": "lb.example.com"},
                ]
            }
        },
    )
    port = only(expect(lb))
    assert [f.address for f in port.frontends] == ["10.96.0.10:80", "203.0.113.10:80", "nodeport:30080"]
    assert port.source_ranges == ["172.30.0.0/24"]
    assert port.frontends[1].source_ranges == ["172.30.0.0/24"]
    assert port.health_check_node_port == 0


def test_a_null_load_balancer_status_has_no_ingress() -> None:
    """``status.loadBalancer: null`` (a JSON null the shape check lets through) is no ingress, as
    kube-proxy reads a nil LoadBalancer status, not a traceback."""
    lb = svc("lb", type="LoadBalancer", externalTrafficPolicy="Cluster",
             ports=[{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"}],
             status={"loadBalancer": None})
    port = only(expect(lb))
    assert port.load_balancer_ips == []
    assert [f.address for f in port.frontends] == ["10.96.0.10:80", "nodeport:30080"]


def test_external_policy_local_and_health_check() -> None:
    lb = svc(
        "lb",
        type="LoadBalancer",
        externalTrafficPolicy="Local",
        healthCheckNodePort=32000,
        ports=[{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"}],
        status={"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}},
    )
    port = only(expect(lb, eps("lb", [ep("10.0.0.1"), ep("10.0.1.1", node="node-b")])))
    assert port.health_check_node_port == 32000
    assert {f.kind: f.policy for f in port.frontends} == {
        "cluster-ip": "cluster",
        "load-balancer": "local",
        "node-port": "local",
    }
    assert names(port.cluster_endpoints) == ["10.0.0.1:8080", "10.0.1.1:8080"]
    assert names(port.local_endpoints) == ["10.0.0.1:8080"]
    # ClusterIP type with eTP Local but no external IPs is not externally accessible: no local policy
    plain = only(
        expect(svc("plain", externalTrafficPolicy="Local"), eps("plain", [ep("10.0.0.1", node="node-b")]))
    )
    assert not plain.external_local and plain.local_endpoints == []


def test_session_affinity_default_timeout() -> None:
    assert only(expect(svc("a", sessionAffinity="ClientIP"))).affinity_seconds == 10800
    cfg = {"clientIP": {"timeoutSeconds": 600}}
    assert (
        only(expect(svc("a", sessionAffinity="ClientIP", sessionAffinityConfig=cfg))).affinity_seconds == 600
    )
    assert only(expect(svc("a"))).affinity_seconds is None


# -- endpoints --------------------------------------------------------------------------------------


def test_conditions_and_terminating_fallback() -> None:
    port = only(
        expect(
            svc("web"),
            eps(
                "web",
                [
                    ep("10.0.0.1"),
                    ep("10.0.0.2", ready=False, serving=True, terminating=True),
                    ep("10.0.0.3", ready=False, serving=False),
                    ep("10.0.0.4", ready=None),
                ],
            ),
        )
    )
    assert names(port.cluster_endpoints) == ["10.0.0.1:8080", "10.0.0.4:8080"]  # nil ready means ready
    assert "terminating" in port.why_not_used(Endpoint("10.0.0.2", 8080))
    assert "not ready" in port.why_not_used(Endpoint("10.0.0.3", 8080))
    assert "no EndpointSlice" in port.why_not_used(Endpoint("10.0.0.9", 8080))
    # no ready endpoint anywhere: fall back to serving + terminating ones
    port = only(
        expect(
            svc("web"),
            eps(
                "web",
                [
                    ep("10.0.0.2", ready=False, serving=True, terminating=True),
                    ep("10.0.0.3", ready=False, serving=False, terminating=True),
                ],
            ),
        )
    )
    assert names(port.cluster_endpoints) == ["10.0.0.2:8080"]
    assert port.has_any_endpoints


def test_no_endpoints_verdicts() -> None:
    empty = only(expect(svc("web")))
    assert empty.no_endpoints_verdict("cluster") == "reject" and not empty.has_any_endpoints
    itp = only(expect(svc("itp", internalTrafficPolicy="Local"), eps("itp", [ep("10.0.1.1", node="node-b")])))
    assert itp.cluster_endpoints == [] and itp.local_endpoints == []  # Cluster endpoints unused
    assert itp.no_endpoints_verdict("local") == "drop"
    assert [f.policy for f in itp.frontends] == ["local"]


def test_local_serving_terminating_fallback() -> None:
    np = svc(
        "np",
        type="NodePort",
        externalTrafficPolicy="Local",
        ports=[{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"}],
    )
    port = only(
        expect(
            np,
            eps(
                "np",
                [ep("10.0.0.1", ready=False, serving=True, terminating=True), ep("10.0.1.1", node="node-b")],
            ),
        )
    )
    assert names(port.local_endpoints) == ["10.0.0.1:8080"]
    assert names(port.cluster_endpoints) == ["10.0.1.1:8080"]
    assert names(port.reachable_endpoints) == ["10.0.0.1:8080", "10.0.1.1:8080"]


def test_dedup_across_slices_prefers_local_and_skips_bad_ports() -> None:
    port = only(
        expect(
            svc("web"),
            eps("web", [ep("10.0.0.1", node="node-b")], name="web-1"),
            eps("web", [ep("10.0.0.1"), ep("10.0.0.2")], name="web-2"),
            eps("web", [ep("10.0.0.3")], name="web-3", ports=[{"port": 8080, "protocol": "TCP"}]),
            eps("web", [ep("10.0.0.4")], name="web-4", ports=[{"name": "http", "port": 0}]),
            eps("web", [ep("fd00::4")], name="web-5", address_type="IPv6"),
            eps("web", [ep("10.0.0.5")], name="web-6", address_type="FQDN"),
            eps(
                "web",
                [ep("10.0.0.6")],
                name="web-7",
                labels={"service.kubernetes.io/service-proxy-name": "x"},
            ),
        )
    )
    assert names(port.cluster_endpoints) == ["10.0.0.1:8080", "10.0.0.2:8080"]
    assert [e.is_local for e in port.all_endpoints] == [True, True]


def test_topology_hints() -> None:
    hinted = {"service.kubernetes.io/topology-mode": "Auto"}
    endpoints = [ep("10.0.0.1", zones=["zone-a"]), ep("10.0.1.1", node="node-b", zones=["zone-b"])]
    port = only(expect(svc("web", annotations=hinted), eps("web", endpoints)))
    assert port.topology_mode == "PreferSameZone"
    assert names(port.cluster_endpoints) == ["10.0.0.1:8080"]
    assert "topology" in port.why_not_used(Endpoint("10.0.1.1", 8080))
    # v1.30 ignores hints unless the Service asks for them
    assert len(only(expect(svc("web"), eps("web", endpoints))).cluster_endpoints) == 2
    # one ready endpoint without hints: hints ignored
    partial = [ep("10.0.0.1", zones=["zone-a"]), ep("10.0.1.1", node="node-b")]
    assert len(only(expect(svc("web", annotations=hinted), eps("web", partial))).cluster_endpoints) == 2
    # no endpoint hinted for this zone: hints ignored
    other = [ep("10.0.1.1", node="node-b", zones=["zone-b"])]
    assert len(only(expect(svc("web", annotations=hinted), eps("web", other))).cluster_endpoints) == 1


def test_bad_objects_raise_parse_error_not_traceback() -> None:
    with pytest.raises(ParseError):
        expect(svc("web", ports=[{"name": "http", "port": "eighty", "protocol": "TCP"}]))
    # junk that kube-proxy would skip is skipped
    port = only(expect(svc("web"), eps("web", ["junk", {"addresses": []}, ep("10.0.0.1")])))
    assert names(port.cluster_endpoints) == ["10.0.0.1:8080"]


def test_fixture_expectations() -> None:
    state = ClusterState.from_json_text((FIXTURES / "iptables" / "healthy" / "api.json").read_text())
    result = expected_for_node(state, "pdnode1")
    assert result.zone == "zone-a"
    by_key = {n.key: p for (n, _), p in result.ports.items()}
    assert len(by_key) == 16
    assert names(by_key["default/terminating:http/TCP"].cluster_endpoints) == ["10.244.0.11:8080"]
    assert names(by_key["default/web-np:http/TCP"].cluster_endpoints) == [
        "10.244.0.11:8080",
        "10.244.0.12:8080",
    ]
    assert by_key["default/itp-local:http/TCP"].no_endpoints_verdict("local") == "drop"
    assert by_key["default/no-endpoints:http/TCP"].no_endpoints_verdict("cluster") == "reject"
    assert names(by_key["default/kubernetes:https/TCP"].cluster_endpoints) == ["172.30.0.1:6443"]
