"""Issue 16 item 10 (wording): endpoint IPs in numeric order, counts pluralised ("1 service"),
the mode named once ("ipvs: 20 services", not "ipvs: ipvs: ...")."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from kubectl_proxydoctor.analysis import analyse
from kubectl_proxydoctor.cli.status import build_status
from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.model import Endpoint, ServicePortName
from kubectl_proxydoctor.render.report_text import counts_line
from kubectl_proxydoctor.render.status_text import _rule_line, status_lines
from kubectl_proxydoctor.report import NodeReport, ServiceStatus
from kubectl_proxydoctor.snapshot import NodeSnapshot

FIXTURES = Path(__file__).parent / "fixtures"


def test_endpoints_sort_numerically() -> None:
    eps = [Endpoint("10.244.0.100", 80), Endpoint("10.244.0.12", 80), Endpoint("10.244.0.9", 8080),
           Endpoint("fd00::2", 80), Endpoint("10.244.0.9", 80)]
    assert [str(e) for e in sorted(eps)] == ["10.244.0.9:80", "10.244.0.9:8080", "10.244.0.12:80",
                                             "10.244.0.100:80", "[fd00::2]:80"]


def test_report_lists_endpoints_in_numeric_order() -> None:
    doc = json.loads((FIXTURES / "iptables" / "healthy" / "api.json").read_text())
    for item in doc["items"]:
        labels = item["metadata"].get("labels") or {}
        if item["kind"] == "EndpointSlice" and labels.get("kubernetes.io/service-name") == "web":
            item["endpoints"].append({**item["endpoints"][0], "addresses": ["10.244.0.9"]})
            item["endpoints"].append({**item["endpoints"][0], "addresses": ["10.244.0.100"]})
    report = analyse(NodeSnapshot.load(FIXTURES / "iptables" / "healthy"), ClusterState.from_list(doc))
    [web] = [s for s in report.services if s.name.service == "default/web"]
    ips = [ipaddress.ip_address(e.rsplit(":", 1)[0]) for e in web.expected_endpoints]
    assert ips == sorted(ips) and ipaddress.ip_address("10.244.0.9") == ips[0]
    assert str(ips[-1]) == "10.244.0.100"


def test_counts_are_pluralised() -> None:
    entry = {"source": "iptables-nft", "services": 1, "service_ports": 1, "endpoints": 1}
    assert _rule_line(entry) == "iptables-nft: 1 service, 1 service port, 1 endpoint"
    assert _rule_line({"source": "ipvs", "virtual_servers": 1, "real_servers": 2}) == \
        "ipvs: 1 virtual server, 2 real servers"
    report = NodeReport(node="n", mode="iptables", services=[
        ServiceStatus(ServicePortName("default", "web", "http", "TCP"), "ok")])
    assert counts_line(report).plain.startswith("1 service port: 1 ok")


def test_mode_is_named_once() -> None:
    for fixture, mode in (("ipvs/healthy", "ipvs"), ("nftables/healthy", "nftables")):
        lines = [text for _, text, _ in status_lines(build_status(NodeSnapshot.load(FIXTURES / fixture)))]
        assert not any(t.startswith(f"{mode}: {mode}:") for t in lines), lines
        assert any(t.startswith(f"{mode}: ") and "services" in t for t in lines)
