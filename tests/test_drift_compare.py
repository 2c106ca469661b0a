"""Drift checks on synthetic programmed views: a faithful mirror is clean, every mutation is named."""

from __future__ import annotations

import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubectl_proxydoctor.checks import CheckContext, load_checks, run_checks
from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.expected import ExpectedNode, expected_for_node
from kubectl_proxydoctor.model import (
    Endpoint,
    Frontend,
    ProgrammedPort,
    ProgrammedView,
    ServicePortName,
    Target,
)
from kubectl_proxydoctor.primary_views import split_views
from kubectl_proxydoctor.snapshot import NodeSnapshot
from tests.test_expected import ep, eps, node, svc

NODE = "node-a"


def mirror(expected: ExpectedNode, mode: str = "iptables", source: str = "iptables-nft") -> ProgrammedView:
    """The view a correct kube-proxy programs for these expectations."""
    view = ProgrammedView(mode=mode, source=source)  # type: ignore[arg-type]
    for (name, family), p in expected.ports.items():
        port = ProgrammedPort(name, family)
        for ef in p.frontends:
            endpoints = p.endpoints_for(ef.policy)
            targets = [
                Target(e, 1 / len(endpoints), 1 if mode == "ipvs" else None, [f"rule {e}"]) for e in endpoints
            ]
            port.frontends.append(
                Frontend(
                    ef.kind,
                    ef.ip,
                    ef.port,
                    ef.protocol,
                    targets,
                    policy=ef.policy,  # type: ignore[arg-type]
                    no_endpoints=p.no_endpoints_verdict(ef.policy),
                    source_ranges=list(ef.source_ranges),
                    affinity_seconds=p.affinity_seconds,
                    evidence=[f"frontend {ef.address}"],
                )
            )
        view.add(port)
    return view


def cluster(*items: dict) -> ClusterState:
    return ClusterState.from_list({"kind": "List", "items": [node(), *items]})


BASE = (
    svc("web", clusterIP="10.96.0.10"),
    eps("web", [ep("10.0.0.1"), ep("10.0.0.2"), ep("10.0.1.1", node="node-b")]),
    svc(
        "np",
        clusterIP="10.96.0.11",
        type="NodePort",
        externalTrafficPolicy="Local",
        ports=[{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"}],
    ),
    eps("np", [ep("10.0.0.3"), ep("10.0.1.3", node="node-b")]),
    svc(
        "aff",
        clusterIP="10.96.0.12",
        sessionAffinity="ClientIP",
        sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}},
    ),
    eps("aff", [ep("10.0.0.4")]),
    svc(
        "lb",
        clusterIP="10.96.0.13",
        type="LoadBalancer",
        loadBalancerSourceRanges=["172.30.0.0/24"],
        ports=[{"name": "http", "port": 80, "nodePort": 30082, "protocol": "TCP"}],
        status={"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}},
    ),
    eps("lb", [ep("10.0.0.5")]),
    svc("none", clusterIP="10.96.0.14"),
)


def run(state: ClusterState, view: ProgrammedView | list[ProgrammedView], mode: str = "iptables"):
    views = view if isinstance(view, list) else [view]
    ctx = CheckContext(NodeSnapshot(), views, state, expected_for_node(state, NODE), mode=mode)
    return run_checks(ctx, only=[n for n in load_checks() if n.startswith("drift-")])


def codes(findings) -> list[tuple[str, str | None]]:
    return sorted((f.code, f.service) for f in findings if f.severity != "info")


def base():
    state = cluster(*BASE)
    return state, mirror(expected_for_node(state, NODE))


def port_of(view: ProgrammedView, service: str) -> ProgrammedPort:
    [port] = [p for (n, _), p in view.ports.items() if n.name == service]
    return port


def test_mirror_is_clean() -> None:
    state, view = base()
    assert codes(run(state, view)) == []


def test_missing_service_and_stale_service() -> None:
    state, view = base()
    del view.ports[(ServicePortName("default", "web", "http", "TCP"), 4)]
    extra = ProgrammedPort(
        ServicePortName("default", "gone", "http", "TCP"),
        4,
        [Frontend("cluster-ip", "10.96.0.99", 80, "TCP", [Target(Endpoint("10.0.0.9", 80), 1.0)])],
    )
    view.add(extra)
    found = run(state, view)
    assert codes(found) == [("not-programmed", "default/web"), ("stale-service", "default/gone")]
    [stale] = [f for f in found if f.code == "stale-service"]
    assert "no longer exists" in stale.message and "10.0.0.9:80" in stale.message


def test_protocol_change_is_one_wrong_protocol_finding() -> None:
    state, view = base()
    port = view.ports.pop((ServicePortName("default", "web", "http", "TCP"), 4))
    port.name = ServicePortName("default", "web", "http", "UDP")
    view.add(port)
    found = run(state, view)
    assert codes(found) == [("wrong-protocol", "default/web")]


def test_stale_and_missing_endpoints_name_the_endpoint() -> None:
    state, view = base()
    front = port_of(view, "web").frontends[0]
    front.targets = [
        Target(Endpoint("10.0.0.1", 8080), 0.5),
        Target(Endpoint("10.0.0.9", 8080), 0.5, evidence=["x"]),
    ]
    found = run(state, view)
    assert codes(found) == [
        ("missing-endpoint", "default/web"),
        ("missing-endpoint", "default/web"),
        ("stale-endpoint", "default/web"),
    ]
    messages = " ".join(f.message for f in found)
    assert "10.0.0.9:8080" in messages and "10.0.0.2:8080" in messages and "10.0.1.1:8080" in messages
    [stale] = [f for f in found if f.code == "stale-endpoint"]
    assert stale.evidence == ["x"] and "kube-system" in stale.fix


def test_flushed_chain() -> None:
    state, view = base()
    port_of(view, "web").frontends[0].targets = []
    found = run(state, view)
    assert [c for c, _ in codes(found)] == ["chain-missing"] + ["missing-endpoint"] * 3
    [chain] = [f for f in found if f.code == "chain-missing"]
    assert chain.message.startswith("KUBE-SVC-") and "10.96.0.10:80 is not DNATed" in chain.message


def test_frontends_ports_ranges_policy_affinity() -> None:
    state, view = base()
    lb = port_of(view, "lb")
    lb.frontends = [f for f in lb.frontends if f.kind != "node-port"]  # NodePort missing
    lb.frontends[1].source_ranges = []  # LB admits everyone
    lb.frontends.append(Frontend("external-ip", "198.51.100.7", 80, "TCP"))  # stale external IP
    port_of(view, "web").frontends[0].port = 81  # wrong port
    port_of(view, "aff").frontends[0].affinity_seconds = None
    np_front = [f for f in port_of(view, "np").frontends if f.kind == "node-port"][0]
    np_front.policy = "cluster"
    np_front.targets = [Target(Endpoint("10.0.0.3", 8080), 0.5), Target(Endpoint("10.0.1.3", 8080), 0.5)]
    found = codes(run(state, view))
    assert found == sorted(
        [
            ("missing-frontend", "default/lb"),
            ("source-ranges-mismatch", "default/lb"),
            ("stale-frontend", "default/lb"),
            ("wrong-port", "default/web"),
            ("affinity-mismatch", "default/aff"),
            ("traffic-policy-mismatch", "default/np"),
            ("stale-endpoint", "default/np"),
        ]
    )


def test_probabilities_and_weights() -> None:
    state, view = base()
    port_of(view, "web").frontends[0].targets[0].probability = 0.9
    assert codes(run(state, view)) == [("uneven-probability", "default/web")]
    state, _ = base()
    ipvs = mirror(expected_for_node(state, NODE), mode="ipvs", source="ipvs")
    targets = port_of(ipvs, "web").frontends[0].targets
    targets[0].weight = 5
    assert codes(run(state, ipvs, mode="ipvs")) == [("uneven-weights", "default/web")]
    targets[0].weight = 0  # stuck at 0: it gets no new connections
    found = run(state, ipvs, mode="ipvs")
    assert codes(found) == [("missing-endpoint", "default/web")]
    assert "weight is 0" in found[0].message or "weight 0" in found[0].message


def test_local_blackhole_is_advisory() -> None:
    state = cluster(
        svc(
            "np",
            type="NodePort",
            externalTrafficPolicy="Local",
            ports=[{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"}],
        ),
        eps("np", [ep("10.0.1.3", node="node-b")]),
    )
    found = run(state, mirror(expected_for_node(state, NODE)))
    assert [(f.code, f.severity) for f in found] == [("local-blackhole", "warning")]
    assert "30080" in found[0].message


def test_second_backend_is_compared_and_labelled() -> None:
    state, view = base()
    legacy = ProgrammedView(mode="iptables", source="iptables-legacy")
    stale_copy = copy.deepcopy(port_of(view, "web"))
    stale_copy.frontends[0].targets.append(Target(Endpoint("10.0.0.99", 8080), 0.25))
    legacy.add(stale_copy)
    primary, secondary = split_views([view, legacy], "iptables")
    assert primary == [view] and list(secondary) == ["iptables-legacy"]
    found = run(state, [view, legacy])
    assert [f.code for f in found if f.severity == "error"] == ["stale-endpoint"]
    assert found[0].message.startswith("[iptables-legacy]") and "10.0.0.99:8080" in found[0].message


def test_no_api_means_no_drift_checks() -> None:
    state, view = base()
    ctx = CheckContext(NodeSnapshot(), [view], None, None, mode="iptables")
    assert [f for f in run_checks(ctx) if f.code.startswith(("stale", "missing", "not-"))] == []


# -- property: whatever the API says, a faithful mirror has no drift; removing an endpoint is found --

ips = st.integers(min_value=1, max_value=40).map(lambda i: f"10.0.{i // 10}.{i % 10 + 1}")
endpoint_st = st.builds(
    lambda ip, local, ready, serving, terminating: ep(
        ip, node=NODE if local else "node-b", ready=ready, serving=serving, terminating=terminating
    ),
    ips,
    st.booleans(),
    st.sampled_from([True, False, None]),
    st.sampled_from([True, False, None]),
    st.sampled_from([True, False, None]),
)
service_st = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer"]),
        "itp": st.sampled_from(["Cluster", "Local"]),
        "etp": st.sampled_from(["Cluster", "Local"]),
        "affinity": st.booleans(),
        "endpoints": st.lists(endpoint_st, max_size=6),
        "slices": st.integers(min_value=1, max_value=3),
    }
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(service_st, min_size=1, max_size=5), st.data())
def test_mirror_never_drifts_and_removals_are_found(services: list[dict], data) -> None:
    items: list[dict] = []
    for i, s in enumerate(services):
        spec: dict = {"clusterIP": f"10.96.1.{i + 1}", "type": s["type"], "internalTrafficPolicy": s["itp"]}
        if s["type"] != "ClusterIP":
            spec["externalTrafficPolicy"] = s["etp"]
            spec["ports"] = [{"name": "http", "port": 80, "nodePort": 30000 + i, "protocol": "TCP"}]
        if s["affinity"]:
            spec["sessionAffinity"] = "ClientIP"
        status = (
            {"loadBalancer": {"ingress": [{"ip": f"203.0.113.{i + 1}"}]}}
            if s["type"] == "LoadBalancer"
            else None
        )
        items.append(svc(f"s{i}", status=status, **spec))
        chunks = [s["endpoints"][k :: s["slices"]] for k in range(s["slices"])]
        items += [eps(f"s{i}", chunk, name=f"s{i}-{k}") for k, chunk in enumerate(chunks)]
    state = cluster(*items)
    expected = expected_for_node(state, NODE)
    view = mirror(expected)
    assert [f for f in run(state, view) if f.severity == "error"] == []
    with_targets = [(p, f) for p in view.ports.values() for f in p.frontends if f.targets]
    if with_targets:
        port, front = data.draw(st.sampled_from(with_targets))
        removed = front.targets.pop(0).endpoint
        for t in front.targets:
            t.probability = 1 / len(front.targets)
        found = run(state, view)
        assert any(
            f.code in ("missing-endpoint", "chain-missing")
            and f.service == port.name.service
            and str(removed) in f.message
            for f in found
        )


def test_flushed_chain_names_per_mode() -> None:
    from kubectl_proxydoctor.checks.drift_compare import _chain_name

    name = ServicePortName("default", "web", "http", "TCP")
    front = Frontend("cluster-ip", "10.96.100.10", 80, "TCP")
    assert (
        _chain_name("iptables", name, "cluster", front) == "KUBE-SVC-CDGGSHYLG3RE2FKL (nat)"
    )  # chain-flushed
    # the name kube-proxy gave this chain in tests/fixtures/nftables/healthy
    assert _chain_name("nftables", name, "cluster", front) == (
        "chain service-SUSTUHLJ-default/web/tcp/http (table kube-proxy)"
    )
    assert _chain_name("ipvs", name, "cluster", front) == "the virtual server 10.96.100.10:80"
