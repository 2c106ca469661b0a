"""A NodeReport for the TUI tests, built by hand from tests/fixtures/iptables/stale-endpoint.

Until analysis.analyse lands, the TUI is tested on this report: the real capture's snapshot and
API objects, the 16 service ports of its expected.json, and the drifted default/web:http with the
real iptables-save lines as evidence. Also tests that the rows the TUI builds agree with it.
"""

from __future__ import annotations

import json
from pathlib import Path

from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.model import (
    Endpoint,
    Finding,
    Frontend,
    Packet,
    ProgrammedPort,
    ProgrammedView,
    ServicePortName,
    Target,
    TraceOutcome,
    TraceResult,
    TraceStep,
)
from kubectl_proxydoctor.report import NodeReport, ServiceStatus
from kubectl_proxydoctor.snapshot import NodeSnapshot

FIXTURE = Path(__file__).parent / "fixtures" / "iptables" / "stale-endpoint"


def _eps(*last: int, port: int = 8080) -> list[str]:
    return [f"10.244.0.{n}:{port}" for n in last]


# ns, name, port, proto, type, frontends, expected endpoints (from the capture's api.json)
PORTS = [
    ("default", "dns", "dns", "UDP", "ClusterIP", ["10.96.100.16:53"], _eps(11, 13, port=5353)),
    ("default", "dns", "dns-tcp", "TCP", "ClusterIP", ["10.96.100.16:53"], _eps(11, 13, port=5353)),
    ("default", "ext", "http", "TCP", "ClusterIP", ["10.96.100.18:80", "198.51.100.20:80"], _eps(13)),
    ("default", "itp-local", "http", "TCP", "ClusterIP", ["10.96.100.19:80"], ["10.244.1.21:8080"]),
    ("default", "kubernetes", "https", "TCP", "ClusterIP", ["10.96.0.1:443"], ["172.30.0.1:6443"]),
    ("default", "lb", "http", "TCP", "LoadBalancer", ["10.96.100.17:80", "nodeport:30082", "203.0.113.10:80"],
     _eps(11, 12)),
    ("default", "multi", "http", "TCP", "ClusterIP", ["10.96.100.15:80"], _eps(11, 12)),
    ("default", "multi", "metrics", "TCP", "ClusterIP", ["10.96.100.15:9090"], _eps(11, 12, port=9090)),
    ("default", "no-endpoints", "http", "TCP", "ClusterIP", ["10.96.100.14:80"], []),
    ("default", "terminating", "http", "TCP", "ClusterIP", ["10.96.100.20:80"], _eps(11)),
    ("default", "web", "http", "TCP", "ClusterIP", ["10.96.100.10:80"], _eps(11, 13)),
    ("default", "web-affinity", "http", "TCP", "ClusterIP", ["10.96.100.13:80"], _eps(11, 13)),
    ("default", "web-local", "http", "TCP", "NodePort", ["10.96.100.12:80", "nodeport:30081"], _eps(12, 13)),
    ("default", "web-np", "http", "TCP", "NodePort", ["10.96.100.11:8080", "nodeport:30080"], _eps(11, 12)),
    ("shop", "cart", "grpc", "TCP", "ClusterIP", ["10.96.100.30:9000"], _eps(12, 13, port=9000)),
    ("shop", "cart", "http", "TCP", "ClusterIP", ["10.96.100.30:80"], _eps(12, 13)),
]
WEB = ServicePortName("default", "web", "http", "TCP")
STALE = "10.244.0.12:8080"


def _rules(*needles: str) -> list[str]:
    lines = (FIXTURE / "iptables-save.txt").read_text().splitlines()
    return [line for line in lines if line.startswith("-A") and any(n in line for n in needles)]


def web_view() -> ProgrammedView:
    """default/web:http as the iptables rules in the capture program it (three endpoints)."""
    svc_chain = "KUBE-SVC-CDGGSHYLG3RE2FKL"
    seps = {"10.244.0.11": "KUBE-SEP-QZSIC2ZS53EHPBVZ", "10.244.0.12": "KUBE-SEP-GFGX6LKJVO6TG6Y4",
            "10.244.0.13": "KUBE-SEP-R6TGM7Q5Z6CPQGKZ"}
    targets = [Target(Endpoint(ip, 8080), 1 / 3, evidence=_rules(f"-A {sep} ")) for ip, sep in seps.items()]
    frontend = Frontend("cluster-ip", "10.96.100.10", 80, "TCP", targets=targets,
                        masquerade="from outside 10.244.0.0/16",
                        evidence=_rules(f"-j {svc_chain}", f"-A {svc_chain} "))
    view = ProgrammedView(mode="iptables", source="iptables-nft")
    view.add(ProgrammedPort(WEB, 4, [frontend]))
    return view


def stale_endpoint_report() -> NodeReport:
    """The report a correct analysis gives for the stale-endpoint capture (hand-built)."""
    snapshot = NodeSnapshot.load(FIXTURE)
    cluster = ClusterState.from_json_text((FIXTURE / "api.json").read_text())
    statuses = json.loads((FIXTURE / "expected.json").read_text())["statuses"]
    services = []
    for ns, name, port, proto, kind, frontends, expected in PORTS:
        spn = ServicePortName(ns, name, port, proto)
        programmed = sorted({*expected, STALE}) if spn == WEB else list(expected)
        services.append(ServiceStatus(spn, statuses[spn.key], kind, frontends, expected, programmed))
    finding = Finding.for_port(
        WEB, code="stale-endpoint", severity="error",
        message=f"endpoint {STALE} is still programmed but is no longer in the API's EndpointSlices",
        evidence=_rules(f"default/web:http -> {STALE}", "-A KUBE-SEP-GFGX6LKJVO6TG6Y4 "),
        fix="kube-proxy is not syncing: check `kubectl -n kube-system logs ds/kube-proxy` and restart it",
        mode="iptables")
    note = Finding(code="kube-proxy-not-running", severity="warning",
                   message="kube-proxy does not answer on 127.0.0.1:10249/10256",
                   fix="check the kube-proxy pod")
    info = Finding(code="mode", severity="info",
                   message="kube-proxy runs in iptables mode (nf_tables backend)")
    return NodeReport(node="pdnode1", mode="iptables", modes_found=["iptables"],
                      sources={"iptables": "ok", "api": "ok"}, services=services,
                      findings=[finding, note, info], views=[web_view()], snapshot=snapshot, cluster=cluster)


def fake_trace(snapshot: object, packet: Packet) -> list[TraceResult]:
    """A trace of 10.96.100.10:80 as the capture's rules send it (three DNAT outcomes)."""
    if (packet.dst, packet.port) != ("10.96.100.10", 80):
        return [TraceResult(packet, "iptables", "iptables-nft", outcomes=[TraceOutcome("no-match")])]
    outcomes = []
    for ip in ("10.244.0.11", "10.244.0.12", "10.244.0.13"):
        path = [TraceStep("KUBE-SERVICES", "-d 10.96.100.10/32 --dport 80 -j KUBE-SVC-CDGGSHYLG3RE2FKL",
                          "destination matches"),
                TraceStep("KUBE-SVC-CDGGSHYLG3RE2FKL", f"-> {ip}:8080", "statistic random")]
        outcomes.append(TraceOutcome("dnat", Endpoint(ip, 8080), 1 / 3, service=WEB, path=path))
    return [TraceResult(packet, "iptables", "iptables-nft", outcomes=outcomes)]


def test_fixture_report_matches_expected_json() -> None:
    from kubectl_proxydoctor.tui.rows import build_rows

    report = stale_endpoint_report()
    rows = build_rows(report)
    assert len(rows) == 16
    drift = [r for r in rows if r.status.status != "ok"]
    assert [r.key for r in drift] == [WEB.key]
    assert drift[0].severity == "error" and drift[0].cells[-1] == "drift"
    assert drift[0].cells[5] == "2/3"
    assert all(r.severity is None for r in rows if r.status.status == "ok")


def test_web_view_carries_real_rules() -> None:
    port = web_view().port(WEB)
    assert port is not None
    lines = [line for fe in port.frontends for line in fe.evidence]
    assert any("KUBE-SERVICES -d 10.96.100.10/32" in line for line in lines)
    assert {str(e) for e in port.all_endpoints} == {"10.244.0.11:8080", STALE, "10.244.0.13:8080"}
