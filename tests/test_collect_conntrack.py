"""conntrack text parsing and the conntrack checks, on the real captures."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubectl_proxydoctor.checks import CheckContext, run_checks
from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.conntrack import parse_conntrack, parse_line
from kubectl_proxydoctor.errors import ParseError
from kubectl_proxydoctor.snapshot import NodeSnapshot
from tests.conftest import FIXTURES

STALE_UDP = FIXTURES / "iptables" / "stale-udp-conntrack"


def _ctx(path, **kw) -> CheckContext:
    snap = NodeSnapshot.load(path)
    cluster = ClusterState.from_json_text(snap.text("api.json")) if snap.has("api.json") else None
    return CheckContext(snap, cluster=cluster, **kw)


def test_parse_extended_udp_and_tcp_lines():
    udp = parse_line("ipv4     2 udp      17 119 src=172.30.0.2 dst=10.96.100.16 sport=40001 dport=53 "
                     "src=10.244.0.13 dst=10.244.0.1 sport=5353 dport=19239 [ASSURED] mark=0 use=1")
    assert (udp.family, udp.proto, udp.timeout, udp.state) == (4, "udp", 119, None)
    assert (udp.original.src, udp.original.dst, udp.original.sport, udp.original.dport) == (
        "172.30.0.2", "10.96.100.16", 40001, 53)
    assert (udp.reply.src, udp.reply.sport) == ("10.244.0.13", 5353)
    assert udp.flags == {"ASSURED"} and udp.mark == 0 and udp.dnat
    tcp = parse_line("tcp 6 431999 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 packets=3 "
                     "bytes=4 [UNREPLIED] src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1 packets=0 bytes=0 "
                     "mark=5 zone=3 use=1")
    assert (tcp.family, tcp.state, tcp.mark, tcp.zone) == (None, "ESTABLISHED", 5, 3)
    assert tcp.flags == {"UNREPLIED"} and not tcp.dnat
    icmp = parse_line("ipv6 10 icmpv6 58 29 src=fd00::1 dst=fd00::2 type=128 code=0 id=7 "
                      "src=fd00::2 dst=fd00::1 type=129 code=0 id=7 mark=0 use=1")
    assert icmp.family == 6 and icmp.original.sport is None and icmp.reply.dst == "fd00::1"


def test_parse_real_capture_and_summary_line():
    text = (STALE_UDP / "conntrack.txt").read_text()
    summary = "conntrack v1.4.7 (conntrack-tools): 103 flow entries have been shown.\n"
    entries = parse_conntrack(text + summary)
    assert len(entries) == 103
    assert sum(e.proto == "udp" for e in entries) == 6


@pytest.mark.parametrize("line, what", [
    ("ipv4 2 udp 17 30 src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2", "original and a reply"),
    ("ipv4 2 udp 17 30 src=1.1.1.1 dst=2.2.2.2 sport=x dport=2 src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1",
     "sport='x'"),
    ("hello world", "not a conntrack entry"),
    ("ipv4 two udp", "layer-3 protocol number"),
    ("udp 17 30 src=1.1.1.1 dst=2.2.2.2 junk src=2.2.2.2 dst=1.1.1.1", "unexpected word"),
])
def test_parse_errors_name_the_line(line, what):
    with pytest.raises(ParseError, match=rf"conntrack.txt:2: .*{what}"):
        parse_conntrack("\n" + line + "\n")


@given(st.text(max_size=200))
def test_parse_never_raises_anything_but_parse_error(text):
    try:
        parse_conntrack(text)
    except ParseError:
        pass


def test_stale_conntrack_finds_the_two_flows_on_the_removed_dns_endpoint():
    findings = run_checks(_ctx(STALE_UDP), only=["stale-conntrack"])
    expected = json.loads((STALE_UDP / "expected.json").read_text())
    want = [d for d in expected["drift"] if d["kind"] == "stale-conntrack"]
    assert [(f.code, f.service, f.port, f.message) for f in findings] == [
        (d["kind"], d["service"], d["port"], d["detail"]) for d in want]
    assert findings[0].severity == "error" and findings[0].protocol == "UDP"
    assert "conntrack -D -p udp --orig-dst 10.96.100.16 --reply-src 10.244.0.13" in findings[0].fix
    assert len(findings[0].evidence) == 2


@pytest.mark.parametrize("fixture", ["iptables/healthy", "iptables/stale-endpoint", "iptables/sync-failing"])
def test_no_stale_conntrack_where_every_dns_flow_is_on_a_live_endpoint(fixture):
    assert run_checks(_ctx(FIXTURES / fixture), only=["stale-conntrack"]) == []


def test_stale_conntrack_needs_the_api():
    snap = NodeSnapshot.load(STALE_UDP)
    assert run_checks(CheckContext(snap), only=["stale-conntrack"]) == []


def test_stale_conntrack_when_the_endpoint_is_back_is_quiet():
    # put 10.244.0.13 back into the dns slice: the same conntrack entries are no longer stale
    ctx = _ctx(STALE_UDP)
    for s in ctx.cluster.endpointslices:
        if s["metadata"]["name"] == "dns-abc01":
            s["endpoints"].append({"addresses": ["10.244.0.13"], "conditions": {"ready": True}})
    assert run_checks(ctx, only=["stale-conntrack"]) == []


def _sysctl_snapshot(count: int, limit: int) -> NodeSnapshot:
    return NodeSnapshot.from_files({"sysctl.txt": f"net.netfilter.nf_conntrack_count = {count}\n"
                                                  f"net.netfilter.nf_conntrack_max = {limit}\n"})


@pytest.mark.parametrize("count, code, severity", [
    (100, None, None), (8999, None, None), (9000, "conntrack-table-near-full", "warning"),
    (10000, "conntrack-table-full", "error")])
def test_conntrack_table_near_full(count, code, severity):
    findings = run_checks(CheckContext(_sysctl_snapshot(count, 10000)), only=["conntrack-table-near-full"])
    assert [(f.code, f.severity) for f in findings] == ([(code, severity)] if code else [])


def test_conntrack_table_real_capture_is_far_from_full():
    assert run_checks(_ctx(FIXTURES / "iptables" / "healthy"), only=["conntrack-table-near-full"]) == []


def test_stale_conntrack_uses_the_expected_view_when_given():
    from kubectl_proxydoctor.expected import expected_for_node

    ctx = _ctx(STALE_UDP)
    ctx.expected = expected_for_node(ctx.cluster, ctx.snapshot.node)
    [finding] = run_checks(ctx, only=["stale-conntrack"])
    assert finding.service == "default/dns" and "10.244.0.13:5353" in finding.message


def test_stale_conntrack_through_a_udp_node_port():
    ctx = _ctx(STALE_UDP)
    for svc in ctx.cluster.services:
        if svc["metadata"]["name"] == "dns":
            svc["spec"]["type"] = "NodePort"
            for port in svc["spec"]["ports"]:
                if port["protocol"] == "UDP":
                    port["nodePort"] = 30053
    line = ("ipv4 2 udp 17 100 src=172.30.0.2 dst=172.30.0.1 sport=40009 dport=30053 "
            "src=10.244.0.13 dst=172.30.0.1 sport=5353 dport=40009 [ASSURED] mark=0 use=1\n")
    ctx.snapshot.files["conntrack.txt"] = line
    [finding] = run_checks(ctx, only=["stale-conntrack"])
    assert finding.message.startswith("1 UDP conntrack entry for nodePort 30053 on 172.30.0.1 still DNATed")
    assert "conntrack -D -p udp --orig-port-dst 30053 --reply-src 10.244.0.13" in finding.fix
    # the same flow to a port that is no service is not kube-proxy's business
    ctx.snapshot.files["conntrack.txt"] = line.replace("dport=30053", "dport=30054")
    assert run_checks(ctx, only=["stale-conntrack"]) == []


def test_fast_path_agrees_with_the_general_parser():
    from kubectl_proxydoctor.conntrack import parse_line_general

    lines = [line for path in sorted(FIXTURES.glob("*/*/conntrack.txt"))
             for line in path.read_text().splitlines() if line.strip()]
    assert len(lines) > 500
    for number, line in enumerate(lines, start=1):
        assert parse_line(line, number=number) == parse_line_general(line, number=number), line


def test_protocol_filter_skips_other_lines_unparsed():
    text = (STALE_UDP / "conntrack.txt").read_text() + "ipv4 2 tcp this line is broken\n"
    with pytest.raises(ParseError):
        parse_conntrack(text)
    udp = parse_conntrack(text, proto="udp")
    assert len(udp) == 6 and {e.proto for e in udp} == {"udp"}
