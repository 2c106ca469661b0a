"""Traces through real nftables captures: every recorded request's answer is a trace outcome."""

from __future__ import annotations

import pytest

from kubectl_proxydoctor.formats.nft_parse import parse_ruleset
from kubectl_proxydoctor.model import Endpoint, Packet
from kubectl_proxydoctor.modes import trace_all
from kubectl_proxydoctor.modes.nftables import trace
from kubectl_proxydoctor.modes.nftables.tracer import trace_ruleset
from kubectl_proxydoctor.snapshot import NodeSnapshot
from tests.test_nftables_expect import FIXTURES, fixture_dirs, traffic


@pytest.mark.parametrize("capture", fixture_dirs(), ids=lambda p: p.name)
def test_traffic_answers_are_trace_outcomes(capture):
    snapshot = NodeSnapshot.load(capture)
    for req in traffic(capture / "traffic.txt"):
        results = trace(snapshot, Packet(req.dst, req.port, req.protocol, req.src))
        assert len(results) == 1, req.line
        outcomes = results[0].outcomes
        assert outcomes, req.line
        assert sum(o.probability for o in outcomes) == pytest.approx(1.0), req.line
        if req.answered_by:
            dests = {o.destination.ip for o in outcomes if o.verdict == "dnat" and o.probability > 0}
            assert req.answered_by in dests, f"{req.line}: traced {dests}"
            # no impossible pod: every outcome is a DNAT (the request was answered)
            assert {o.verdict for o in outcomes} == {"dnat"}, req.line
        elif req.failure == "connection refused":
            assert {o.verdict for o in outcomes} == {"reject"}, req.line
        else:  # timeout: dropped, or nothing DNATs it (no listener behind the address)
            assert {o.verdict for o in outcomes} <= {"drop", "no-match"}, req.line


def test_numgen_branches_and_steps():
    snapshot = NodeSnapshot.load(FIXTURES / "healthy")
    [result] = trace(snapshot, Packet("10.96.100.10", 80, "TCP", "172.30.0.2"))
    assert result.mode == "nftables" and result.source == "nftables"
    assert sorted(str(o.destination) for o in result.outcomes) == [
        "10.244.0.11:8080", "10.244.0.12:8080", "10.244.0.13:8080"]
    assert all(o.probability == pytest.approx(1 / 3) for o in result.outcomes)
    assert all(o.masquerade for o in result.outcomes)  # off-cluster source: masqueraded
    assert all(str(o.service) == "default/web:http" for o in result.outcomes)
    path = result.outcomes[0].path
    chains = [s.chain for s in path]
    assert chains[0] == "ip kube-proxy filter-prerouting"
    assert "ip kube-proxy nat-prerouting" in chains
    assert any("found in @service-ips" in s.why for s in path)
    assert any(s.rule.startswith("numgen random mod 3 vmap") and "p=0.333" in s.why for s in path)
    assert path[-1].rule == "masquerade fully-random"


def test_pod_source_not_masqueraded_and_firewall_drop():
    snapshot = NodeSnapshot.load(FIXTURES / "healthy")
    [result] = trace(snapshot, Packet("10.96.100.10", 80, "TCP", "10.244.0.11"))
    masq = {str(o.destination): o.masquerade for o in result.outcomes}
    assert masq == {"10.244.0.11:8080": True, "10.244.0.12:8080": False, "10.244.0.13:8080": False}
    [result] = trace(snapshot, Packet("203.0.113.10", 80, "TCP", "10.244.0.11"))
    [out] = result.outcomes
    assert out.verdict == "drop" and out.path[-1].chain.endswith("firewall-D2RGPZ6L-default/lb/tcp/http")


def test_firewall_in_front_drops_nodeport_first():
    snapshot = NodeSnapshot.load(FIXTURES / "firewall-in-front")
    [result] = trace(snapshot, Packet("172.30.0.1", 30080, "TCP", "172.30.0.2"))
    [out] = result.outcomes
    assert out.verdict == "drop"
    assert out.path[-1].chain == "inet hostfw prerouting" and "drop" in out.path[-1].rule
    # the same service through its cluster IP is not blocked (dport 8080)
    [result] = trace(snapshot, Packet("10.96.100.11", 8080, "TCP", "172.30.0.2"))
    assert {o.verdict for o in result.outcomes} == {"dnat"}


def test_no_endpoints_reject_names_service_and_trace_all_dispatch():
    snapshot = NodeSnapshot.load(FIXTURES / "healthy")
    results = trace_all(snapshot, Packet("10.96.100.14", 80, "TCP", "172.30.0.1"), modes=("nftables",))
    [out] = results[0].outcomes
    assert out.verdict == "reject" and str(out.service) == "default/no-endpoints:http"


def test_numgen_modulus_larger_than_entries_falls_through():
    doc = {"nftables": [
        {"table": {"family": "ip", "name": "kube-proxy"}},
        {"chain": {"family": "ip", "table": "kube-proxy", "name": "nat-prerouting", "type": "nat",
                   "hook": "prerouting", "prio": -100, "policy": "accept"}},
        {"chain": {"family": "ip", "table": "kube-proxy", "name": "services"}},
        {"chain": {"family": "ip", "table": "kube-proxy", "name": "endpoint-X"}},
        {"rule": {"family": "ip", "table": "kube-proxy", "chain": "nat-prerouting",
                  "expr": [{"jump": {"target": "services"}}]}},
        {"rule": {"family": "ip", "table": "kube-proxy", "chain": "services", "expr": [
            {"vmap": {"key": {"numgen": {"mode": "random", "mod": 2, "offset": 0}},
                      "data": {"set": [[0, {"goto": {"target": "endpoint-X"}}]]}}}]}},
        {"rule": {"family": "ip", "table": "kube-proxy", "chain": "endpoint-X", "expr": [
            {"dnat": {"addr": "10.0.0.5", "port": 80}}]}},
    ]}
    [result] = trace_ruleset(parse_ruleset(doc), Packet("10.96.0.9", 80, "TCP", "192.0.2.1"), set())
    by_verdict = {o.verdict: o for o in result.outcomes}
    assert by_verdict["dnat"].destination == Endpoint("10.0.0.5", 80)
    assert by_verdict["dnat"].probability == pytest.approx(0.5)
    assert by_verdict["no-match"].probability == pytest.approx(0.5)


def test_unknown_expressions_are_noted_not_silently_matched():
    doc = {"nftables": [
        {"table": {"family": "ip", "name": "kube-proxy"}},
        {"table": {"family": "ip", "name": "filter"}},
        {"chain": {"family": "ip", "table": "filter", "name": "PREROUTING", "type": "filter",
                   "hook": "prerouting", "prio": -300, "policy": "accept"}},
        {"rule": {"family": "ip", "table": "filter", "chain": "PREROUTING", "expr": [
            {"xt": {"type": "match", "name": "comment"}}, {"drop": None}]}},
    ]}
    [result] = trace_ruleset(parse_ruleset(doc), Packet("10.96.0.9", 80, "TCP", "192.0.2.1"), set())
    assert [o.verdict for o in result.outcomes] == ["no-match"]
    assert any("not modelled" in n or "cannot evaluate" in n for n in result.notes)


def test_ipv6_packet_has_no_result_without_ip6_table():
    doc = {"nftables": [{"table": {"family": "ip", "name": "kube-proxy"}}]}
    assert trace_ruleset(parse_ruleset(doc), Packet("fd00::1", 80), set()) == []
