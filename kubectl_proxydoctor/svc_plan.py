"""Which packets `svc` traces: one per frontend and per kind of source that changes the outcome.

A ClusterIP is traced from a pod on this node and from the node itself; a NodePort, external IP or
load-balancer IP from a client off the node (and from the node itself when externalTrafficPolicy
is Local); a load-balancer IP with ``loadBalancerSourceRanges`` from a client inside the ranges and
from one outside them. Sources are real addresses of the capture when it has them (node
addresses, endpoint IPs of pods on this node), else documentation addresses (RFC 5737 / 3849).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from kubectl_proxydoctor.expected import ExpectedFrontend, ExpectedPort
from kubectl_proxydoctor.model import Packet
from kubectl_proxydoctor.node_facts import NodeFacts

_OFF_NODE_FALLBACK = {4: ("192.0.2.10", "198.51.100.77", "203.0.113.77"),
                      6: ("2001:db8::10", "2001:db8:1::10")}


@dataclass(frozen=True)
class PlannedTrace:
    """One packet `svc` traces: its frontend, what kind of source sends it, and the packet."""

    frontend: str  # e.g. "203.0.113.10:80/tcp"
    source: str  # e.g. "off-node client 172.30.0.2, inside loadBalancerSourceRanges"
    packet: Packet


def plan(ports: list[ExpectedPort], node_ip: str | None, facts: NodeFacts) -> list[PlannedTrace]:
    """The packets to trace for a Service's ports, frontend by frontend."""
    out: list[PlannedTrace] = []
    for port in ports:
        family = port.family
        node = node_ip if node_ip and _family(node_ip) == family else _node_address(facts, family)
        for f in port.frontends:
            ip = f.ip if f.kind != "node-port" else node
            if not ip:
                continue
            label = f"{ip if ':' not in ip else f'[{ip}]'}:{f.port}/{f.protocol.lower()}"
            if f.kind == "node-port":
                label = f"nodeport:{f.port}/{f.protocol.lower()} ({ip}:{f.port})"
            for source, src in _sources(f, port, node, facts, family):
                out.append(PlannedTrace(label, source, Packet(ip, f.port, f.protocol, src)))
    return out


Source = tuple[str, str | None]  # (who sends, its address if one is known)


def _sources(f: ExpectedFrontend, port: ExpectedPort, node: str | None, facts: NodeFacts,
             family: int) -> list[Source]:
    node_src: list[Source] = [(f"the node itself ({node})", node)] if node else []
    if f.kind == "cluster-ip":
        pod = _local_pod(facts, family, {ep.ip for ep in port.all_endpoints})
        pod_src: list[Source] = [(f"pod {pod[0]} on this node ({pod[1]})", pod[1])] if pod else \
            [("a client off this node (no pod of this node in the API)", _off_node(facts, family, [], node))]
        return pod_src + node_src
    off = _off_node(facts, family, f.source_ranges, node)
    if f.source_ranges:
        inside = _inside(facts, family, f.source_ranges)
        sources: list[Source] = []
        if inside:
            sources.append((f"a client inside loadBalancerSourceRanges ({inside})", inside))
        sources.append((f"a client outside loadBalancerSourceRanges ({off})", off))
    else:
        sources = [(f"a client off this node ({off})", off)]
    if f.policy == "local" and node:
        sources += node_src
    return sources


def _family(ip: str) -> int:
    return ipaddress.ip_address(ip).version


def _node_address(facts: NodeFacts, family: int) -> str | None:
    for ip in sorted(facts.addresses or ()):
        addr = ipaddress.ip_address(ip)
        if addr.version == family and not addr.is_loopback and not addr.is_link_local:
            return ip
    return None


def _local_pod(facts: NodeFacts, family: int, avoid: set[str]) -> tuple[str, str] | None:
    """(name, IP) of a pod on this node (an endpoint whose nodeName is this node), preferring one
    that is not behind the Service itself (a client, not a hairpin)."""
    if facts.node is None:
        return None
    local = [ip for ip, infos in sorted((facts.endpoints or {}).items())
             if _family(ip) == family and any(i.node == facts.node for i in infos)]
    for ip in sorted(local, key=lambda ip: ip in avoid):
        return facts.pod_names.get(ip) or "(an endpoint)", ip
    return None


def _taken(facts: NodeFacts, ip: str) -> bool:
    return ip in (facts.addresses or ()) or ip in (facts.endpoints or {}) or ip in facts.service_ips


def _off_node(facts: NodeFacts, family: int, ranges: list[str], node: str | None) -> str:
    """An address off this node, outside ``ranges``: a neighbour of the node's address first."""
    nets = [ipaddress.ip_network(r, strict=False) for r in ranges]
    candidates: list[str] = []
    if node is not None:
        base = ipaddress.ip_address(node)
        candidates += [str(base + d) for d in (1, 2, 3, -1)]
    candidates += list(_OFF_NODE_FALLBACK[family])
    for ip in candidates:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            continue
        if not _taken(facts, ip) and not any(addr in n for n in nets if n.version == addr.version):
            return ip
    return _OFF_NODE_FALLBACK[family][0]


def _inside(facts: NodeFacts, family: int, ranges: list[str]) -> str | None:
    """An address inside the source ranges that is not this node's nor a pod's."""
    for text in ranges:
        net = ipaddress.ip_network(text, strict=False)
        if net.version != family:
            continue
        for i, addr in enumerate(net.hosts() if net.num_addresses > 2 else iter([net.network_address])):
            if i > 64:
                break
            if not _taken(facts, str(addr)):
                return str(addr)
    return None
