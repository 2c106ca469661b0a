"""The iptables interpreter and tracer against real kube-proxy v1.30 captures.

Healthy captures: the interpreted endpoints of every service port equal what api.json gives this
node (computed here from the API objects, as kube-proxy does). Drift captures: what SCENARIO.md
says kube-proxy last programmed. traffic.txt: every answering pod is among the trace outcomes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kubectl_proxydoctor.model import Endpoint, Packet, ServicePortName
from kubectl_proxydoctor.modes import iptables as ipt
from kubectl_proxydoctor.modes import trace_all
from kubectl_proxydoctor.snapshot import NodeSnapshot

FIXTURES = Path(__file__).parent / "fixtures" / "iptables"
CAPTURES = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())
NODE_IP = "172.30.0.1"
SOURCES = {"pdnode1": NODE_IP, "pdclient": "172.30.0.2", "pdpod1": "10.244.0.11"}
LIVE_IPS = {"10.244.0.11", "10.244.0.12", "10.244.0.13", NODE_IP}


def load(name: str) -> NodeSnapshot:
    return NodeSnapshot.load(FIXTURES / name)


def spn(text: str, proto: str = "TCP") -> ServicePortName:
    ns, rest = text.split("/")
    name, port = rest.split(":")
    return ServicePortName(ns, name, port, proto)


def api_expectation(snapshot: NodeSnapshot) -> dict[ServicePortName, dict[str, set[Endpoint]]]:
    """Per service port: endpoints for internal (cluster IP) and external (NodePort...) traffic."""
    doc = json.loads(snapshot.text("api.json") or "{}")
    node = snapshot.node
    slices: dict[tuple[str, str], list[dict]] = {}
    for item in doc["items"]:
        if item["kind"] == "EndpointSlice":
            md = item["metadata"]
            slices.setdefault((md["namespace"], md["labels"]["kubernetes.io/service-name"]), []).append(item)
    out: dict[ServicePortName, dict[str, set[Endpoint]]] = {}
    for svc in (i for i in doc["items"] if i["kind"] == "Service"):
        md, spec = svc["metadata"], svc["spec"]
        if spec.get("type") == "ExternalName" or spec.get("clusterIP") in (None, "", "None"):
            continue
        if (md.get("labels") or {}).get("service.kubernetes.io/service-proxy-name"):
            continue
        for port in spec.get("ports", []):
            name = ServicePortName(md["namespace"], md["name"], port.get("name", ""),
                                   port.get("protocol", "TCP"))
            ready, serving_term, local = set(), set(), set()
            for sl in slices.get((md["namespace"], md["name"]), []):
                ports = sl.get("ports") or []
                target = next((p["port"] for p in ports if p.get("name", "") == name.port), None)
                if target is None:
                    continue
                for ep in sl["endpoints"]:
                    cond = ep.get("conditions") or {}
                    eps = {Endpoint(a, target) for a in ep["addresses"]}
                    if cond.get("ready", True):
                        ready |= eps
                        if ep.get("nodeName") == node:
                            local |= eps
                    elif cond.get("serving") and cond.get("terminating"):
                        serving_term |= eps
            cluster = ready or serving_term  # terminating endpoints only as a fallback
            internal = local if spec.get("internalTrafficPolicy") == "Local" else cluster
            external = local if spec.get("externalTrafficPolicy") == "Local" else cluster
            out[name] = {"internal": internal, "external": external}
    return out


def programmed(view) -> dict[ServicePortName, dict[str, set[Endpoint]]]:
    out = {}
    for (name, _family), port in view.ports.items():
        internal = {t.endpoint for f in port.frontends if f.kind == "cluster-ip" for t in f.targets}
        external = {t.endpoint for f in port.frontends if f.kind != "cluster-ip" for t in f.targets}
        has_external = any(f.kind != "cluster-ip" for f in port.frontends)
        out[name] = {"internal": internal, "external": external if has_external else None}
    return out


def active_view(snapshot: NodeSnapshot):
    views = [v for v in ipt.interpret(snapshot) if v.source == "iptables-nft"]
    assert len(views) == 1
    return views[0]


def assert_matches_api(snapshot: NodeSnapshot, overrides: dict | None = None,
                       absent: set | None = None) -> None:
    expected = api_expectation(snapshot)
    for name, eps in (overrides or {}).items():
        expected[name] = {"internal": eps, "external": eps}
    for name in absent or ():
        expected.pop(name, None)
    got = programmed(active_view(snapshot))
    assert set(got) == set(expected)
    for name, exp in expected.items():
        assert got[name]["internal"] == exp["internal"], name
        if got[name]["external"] is not None:
            assert got[name]["external"] == exp["external"], name


@pytest.mark.parametrize("capture", ["healthy", "after-switch-from-nftables", "legacy-leftovers",
                                     "third-party-rules"])
def test_kube_proxy_chains_match_the_api(capture: str) -> None:
    # in legacy-leftovers and third-party-rules kube-proxy's own (nf_tables) chains are correct
    assert_matches_api(load(capture))


def test_healthy_frontend_details() -> None:
    view = active_view(load("healthy"))
    lb = view.port(spn("default/lb:http"))
    kinds = {f.kind: f for f in lb.frontends}
    assert set(kinds) == {"cluster-ip", "load-balancer", "node-port"}
    assert kinds["load-balancer"].source_ranges == ["172.30.0.0/24", "203.0.113.10/32"]
    assert kinds["node-port"].port == 30082 and kinds["node-port"].ip is None
    web = view.port(spn("default/web:http")).frontends[0]
    assert [round(t.probability, 6) for t in web.targets] == [0.333333] * 3
    assert abs(sum(t.probability for t in web.targets) - 1) < 1e-6
    assert web.masquerade == "source not in 10.244.0.0/16"
    assert any("KUBE-SVC-CDGGSHYLG3RE2FKL" in line for line in web.evidence)
    assert view.port(spn("default/web-affinity:http")).frontends[0].affinity_seconds == 600
    local = {f.kind: f for f in view.port(spn("default/web-local:http")).frontends}
    assert local["node-port"].policy == "local" and local["cluster-ip"].policy == "cluster"
    assert view.port(spn("default/no-endpoints:http")).frontends[0].no_endpoints == "reject"
    itp = view.port(spn("default/itp-local:http")).frontends[0]
    assert itp.no_endpoints == "drop" and itp.targets == []
    assert view.port(spn("default/dns:dns", "UDP")) is not None
    assert view.raw is not None and view.raw.chain("nat", "KUBE-SERVICES") is not None


def test_healthy_sources_are_not_duplicated() -> None:
    sources = [v.source for v in ipt.interpret(load("healthy"))]
    assert sources == ["iptables-nft", "ip6tables-nft"]  # iptables-save.txt duplicates the nft file


def test_plain_iptables_save_used_when_alone() -> None:
    snap = load("healthy")
    files = {k: v for k, v in snap.files.items() if "legacy" not in k and "nft-save" not in k}
    views = ipt.interpret(NodeSnapshot.from_files(files))
    assert [v.source for v in views] == ["iptables-nft", "ip6tables-nft"]
    assert len(views[0].ports) == 16


def test_stale_endpoint_still_programmed() -> None:
    snap = load("stale-endpoint")
    web = spn("default/web:http")
    eps = {Endpoint(f"10.244.0.{i}", 8080) for i in (11, 12, 13)}
    assert_matches_api(snap, {web: eps})


def test_not_ready_endpoint_still_programmed() -> None:
    web = spn("default/web:http")
    assert_matches_api(load("not-ready"), {web: {Endpoint(f"10.244.0.{i}", 8080) for i in (11, 12, 13)}})


def test_new_service_not_programmed() -> None:
    assert_matches_api(load("new-service"), absent={spn("default/late:http")})


def test_deleted_service_still_programmed() -> None:
    snap = load("deleted-service")
    got = programmed(active_view(snap))
    np_ = spn("default/web-np:http")
    assert got[np_]["internal"] == {Endpoint("10.244.0.11", 8080), Endpoint("10.244.0.12", 8080)}
    ports = {f.address for f in active_view(snap).port(np_).frontends}
    assert ports == {"10.96.100.11:8080", "nodeport:30080"}
    assert_matches_api(snap, {np_: got[np_]["internal"]})


def test_flushed_chain_has_no_targets() -> None:
    snap = load("chain-flushed")
    view = active_view(snap)
    web = view.port(spn("default/web:http"))
    assert [f.address for f in web.frontends] == ["10.96.100.10:80"]
    assert web.frontends[0].targets == [] and web.frontends[0].no_endpoints is None
    assert view.raw.chain("nat", "KUBE-SVC-CDGGSHYLG3RE2FKL").rules == []
    assert_matches_api(snap, {spn("default/web:http"): set()})


def test_sync_failing_programs_the_last_good_sync() -> None:
    aff = spn("default/web-affinity:http")
    eps = {Endpoint("10.244.0.11", 8080), Endpoint("10.244.0.13", 8080)}
    assert_matches_api(load("sync-failing"), {aff: eps})


def test_stale_udp_conntrack_endpoint_still_programmed() -> None:
    eps = {Endpoint("10.244.0.11", 5353), Endpoint("10.244.0.13", 5353)}
    assert_matches_api(load("stale-udp-conntrack"),
                       {spn("default/dns:dns", "UDP"): eps, spn("default/dns:dns-tcp"): eps})


def test_legacy_leftover_view() -> None:
    views = {v.source: v for v in ipt.interpret(load("legacy-leftovers"))}
    assert set(views) == {"iptables-nft", "iptables-legacy", "ip6tables-nft"}
    legacy = views["iptables-legacy"]
    assert list(legacy.ports) == [(spn("default/web:http"), 4)]
    assert legacy.port(spn("default/web:http")).endpoints == [Endpoint("10.244.0.11", 8080),
                                                              Endpoint("10.244.0.99", 8080)]


# -- traffic.txt ---------------------------------------------------------------------------------

_LINE = re.compile(r"^(\S+) -> (http|udp)://([\d.]+)(?::(\d+))?/?(?:\?sport=\d+)? : (.*)$")
_ANSWER = re.compile(r"^\S+ \(([\d.]+)\)(?: (?:port |udp/)(\d+))?$")


def traffic(capture: str) -> list[tuple[str, str, Packet, str]]:
    out = []
    service = ""
    for line in (FIXTURES / capture / "traffic.txt").read_text().splitlines():
        if line.startswith("#"):
            if not line.startswith("# sources"):
                service = " ".join(re.findall(r"[a-z-]+/[a-z-]+:[a-z-]+", line))
            continue
        m = _LINE.match(line)
        if not m:
            continue
        src, scheme, ip, port, answer = m.groups()
        proto = "UDP" if scheme == "udp" else "TCP"
        pkt = Packet(ip, int(port or 80), proto, SOURCES[src])
        out.append((line, service, pkt, answer))
    return out


@pytest.mark.parametrize("capture", CAPTURES)
def test_traffic_answers_are_trace_outcomes(capture: str) -> None:
    snap = load(capture)
    requests = traffic(capture)
    assert requests
    for line, service, pkt, answer in requests:
        results = [r for r in trace_all(snap, pkt, modes=("iptables",)) if r.source.startswith("iptables")]
        assert results, line
        outcomes = [o for r in results for o in r.outcomes]
        dnat = {o.destination for o in outcomes if o.verdict == "dnat"}
        if answer.startswith("FAIL"):
            if "refused" in answer:
                assert any(o.verdict == "reject" for o in outcomes), line
            failing = [o for o in outcomes
                       if o.verdict != "dnat" or (o.destination and o.destination.ip not in LIVE_IPS)]
            assert failing, line
            continue
        m = _ANSWER.match(answer)
        assert m, line
        ip, port = m.group(1), m.group(2)
        assert any(d.ip == ip and (port is None or d.port == int(port)) for d in dnat), line
        # never a pod the rules could not send it to: every destination is one the interpreter
        # found programmed for the service named in traffic.txt
        if service:
            names = {spn(text, pkt.protocol) for text in service.split()}
            allowed = set()
            for view in ipt.interpret(snap):
                for name in names:
                    port_view = view.port(name)
                    if port_view:
                        allowed |= set(port_view.all_endpoints)
            named = [o for o in outcomes if o.verdict == "dnat" and o.service in names]
            assert named, line
            assert {o.destination for o in named} <= allowed, line


def test_trace_probabilities_and_masquerade() -> None:
    snap = load("healthy")
    (res,) = ipt.trace(snap, Packet("10.96.100.10", 80, "TCP", "172.30.0.2"))
    assert res.source == "iptables-nft"
    assert [(str(o.destination), round(o.probability, 4)) for o in res.outcomes] == [
        ("10.244.0.11:8080", 0.3333), ("10.244.0.12:8080", 0.3333), ("10.244.0.13:8080", 0.3333)]
    assert all(o.masquerade for o in res.outcomes)  # off-cluster source to a cluster IP
    (res,) = ipt.trace(snap, Packet("10.96.100.10", 80, "TCP", "10.244.0.11"))
    # pod source: masqueraded only when it reaches itself (hairpin, the KUBE-SEP -s rule)
    assert {str(o.destination): o.masquerade for o in res.outcomes} == {
        "10.244.0.11:8080": True, "10.244.0.12:8080": False, "10.244.0.13:8080": False}
    chains = [s.chain for s in res.outcomes[0].path]
    assert chains[:3] == ["nat/PREROUTING", "nat/KUBE-SERVICES", "nat/KUBE-SVC-CDGGSHYLG3RE2FKL"]


def test_trace_local_policy_keeps_source_and_lb_firewall() -> None:
    snap = load("healthy")
    (res,) = ipt.trace(snap, Packet("172.30.0.1", 30081, "TCP", "172.30.0.2"))
    assert {str(o.destination) for o in res.outcomes} == {"10.244.0.12:8080", "10.244.0.13:8080"}
    assert not any(o.masquerade for o in res.outcomes)
    (res,) = ipt.trace(snap, Packet("203.0.113.10", 80, "TCP", "10.244.0.11"))
    assert [o.verdict for o in res.outcomes] == ["drop"]
    assert res.outcomes[0].path[-1].chain == "filter/KUBE-PROXY-FIREWALL"


def test_trace_foreign_accept_shadows_service() -> None:
    (res,) = ipt.trace(load("third-party-rules"), Packet("10.96.100.10", 80, "TCP", "172.30.0.2"))
    assert [o.verdict for o in res.outcomes] == ["accept"]
    assert any("added-by-hand" in step.rule for step in res.outcomes[0].path)


def test_trace_unknown_port_is_no_match() -> None:
    (res,) = ipt.trace(load("healthy"), Packet("10.96.100.10", 81, "TCP", "172.30.0.2"))
    assert [o.verdict for o in res.outcomes] == ["no-match"]


def test_ipvs_helper_chains_are_not_traced_as_iptables_mode() -> None:
    snap = NodeSnapshot.load(FIXTURES.parent / "ipvs" / "healthy")
    assert ipt.trace(snap, Packet("10.96.100.10", 80, "TCP", "172.30.0.2")) == []
    views = ipt.interpret(snap)
    assert views and all(not v.ports for v in views)  # raw rules kept for other checks, no ports


def test_localhost_nodeport_copy_is_the_same_frontend() -> None:
    snap = load("healthy")
    files = dict(snap.files)
    files.pop("iptables-save.txt")
    rule = '-A KUBE-NODEPORTS -p tcp -m comment --comment "default/web-np:http" -m tcp --dport 30080'
    copy = ('-A KUBE-NODEPORTS -d 127.0.0.0/8 -p tcp -m comment --comment "default/web-np:http" -m tcp '
            "--dport 30080 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j KUBE-EXT-2262UYG6EQJDKK3I")
    files["iptables-nft-save.txt"] = files["iptables-nft-save.txt"].replace(rule, copy + "\n" + rule)
    view = active_view(NodeSnapshot.from_files(files))
    fronts = view.port(spn("default/web-np:http")).frontends
    assert [f.address for f in fronts] == ["10.96.100.11:8080", "nodeport:30080"]
    assert len(fronts[1].targets) == 2 and any("nfacct" in line for line in fronts[1].evidence)
