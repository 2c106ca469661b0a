"""Test helpers for the nftables tests: what the API gave kube-proxy, and traffic.txt requests.

The expectation mirrors kube-proxy v1.30 (pkg/proxy/topology.go CategorizeEndpoints): ready
endpoints, or serving+terminating ones when none is ready; internalTrafficPolicy Local keeps only
this node's endpoints.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "nftables"
NODE = "pdnode1"
SOURCES = {"pdnode1": "172.30.0.1", "pdclient": "172.30.0.2", "pdpod1": "10.244.0.11",
           "pdpod2": "10.244.0.12", "pdpod3": "10.244.0.13"}
TRAFFIC_RE = re.compile(r"^(?P<src>\S+) -> (?P<scheme>http|udp)://(?P<dst>[\d.]+)(?::(?P<port>\d+))?/? : "
                        r"(?:(?P<pod>pd\S+) \((?P<ip>[\d.]+)\)|FAIL \((?P<fail>[^)]+)\))")


def fixture_dirs() -> list[Path]:
    return sorted(p for p in FIXTURES.iterdir() if (p / "nft-ruleset.json").exists())


def expected_endpoints(api_text: str, node: str = NODE) -> dict[str, dict]:
    """``ns/svc:port/PROTO`` -> {"cluster": set of "ip:port", "local": set, "itp_local": bool}."""
    items = json.loads(api_text)["items"]
    services = [i for i in items if i["kind"] == "Service"]
    slices = [i for i in items if i["kind"] == "EndpointSlice"]
    out: dict[str, dict] = {}
    for svc in services:
        spec, meta = svc["spec"], svc["metadata"]
        if spec.get("type") == "ExternalName" or spec.get("clusterIP") in (None, "", "None"):
            continue
        if "service.kubernetes.io/service-proxy-name" in (meta.get("labels") or {}):
            continue
        for port in spec.get("ports", []):
            eps = []
            for sl in slices:
                labels = sl["metadata"].get("labels") or {}
                if sl["metadata"]["namespace"] != meta["namespace"] or \
                        labels.get("kubernetes.io/service-name") != meta["name"]:
                    continue
                for sp in sl.get("ports") or []:
                    same_proto = sp.get("protocol", "TCP") == port["protocol"]
                    if sp.get("name", "") == port.get("name", "") and same_proto:
                        for ep in sl.get("endpoints") or []:
                            cond = ep.get("conditions") or {}
                            for addr in ep["addresses"]:
                                eps.append((f"{addr}:{sp['port']}", cond, ep.get("nodeName")))
            ready = {a for a, c, _ in eps if c.get("ready", True)}
            if not ready:
                ready = {a for a, c, _ in eps if c.get("serving") and c.get("terminating")}
            local = {a for a, c, n in eps if n == node and c.get("ready", True)}
            if not local:
                local = {a for a, c, n in eps if n == node and c.get("serving") and c.get("terminating")}
            itp_local = spec.get("internalTrafficPolicy") == "Local"
            key = f"{meta['namespace']}/{meta['name']}:{port.get('name', '')}/{port['protocol']}"
            out[key] = {"cluster": local if itp_local else ready, "local": local, "itp_local": itp_local,
                        "etp_local": spec.get("externalTrafficPolicy") == "Local",
                        "node_port": port.get("nodePort")}
    return out


@dataclass
class Request:
    src: str
    dst: str
    port: int
    protocol: str
    answered_by: str | None  # pod IP, or None when it failed
    failure: str | None
    line: str


def traffic(path: Path) -> list[Request]:
    """The requests of a traffic.txt (every non-comment line must parse)."""
    out = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = TRAFFIC_RE.match(line)
        assert m, f"unparsed traffic line: {line}"
        udp = m["scheme"] == "udp"
        port = int(m["port"]) if m["port"] else 80
        proto = "UDP" if udp else "TCP"
        out.append(Request(SOURCES[m["src"]], m["dst"], port, proto, m["ip"], m["fail"], line))
    return out
