"""Service facts the checks compare traffic with: NodePorts, ClusterIP ports, node primary IPs."""

from __future__ import annotations

from dataclasses import dataclass

from kubectl_proxydoctor import conntrack as ct
from kubectl_proxydoctor.snapshot import NodeSnapshot


@dataclass(frozen=True)
class NodePort:
    service: str  # namespace/name
    port: str  # port name
    protocol: str  # lowercase: tcp / udp / sctp
    node_port: int
    health_check: bool = False

    def __str__(self) -> str:
        what = f"{self.service} healthCheckNodePort" if self.health_check else f"{self.service}:{self.port}"
        return f"{self.node_port}/{self.protocol} ({what})"


def _name(svc: dict) -> str:
    meta = svc.get("metadata") or {}
    return f"{meta.get('namespace', 'default')}/{meta.get('name', '?')}"


def node_ports(cluster) -> list[NodePort]:
    """Every NodePort (and healthCheckNodePort) the Services define."""
    out: list[NodePort] = []
    for svc in getattr(cluster, "services", None) or []:
        spec = svc.get("spec") or {}
        if spec.get("type") not in ("NodePort", "LoadBalancer"):
            continue
        for p in spec.get("ports") or []:
            if p.get("nodePort"):
                proto = str(p.get("protocol") or "TCP").lower()
                out.append(NodePort(_name(svc), str(p.get("name") or ""), proto, int(p["nodePort"])))
        if spec.get("healthCheckNodePort"):
            out.append(NodePort(_name(svc), "", "tcp", int(spec["healthCheckNodePort"]), health_check=True))
    return out


def cluster_ip_ports(cluster) -> dict[str, set[tuple[str, int]]]:
    """ClusterIP -> the (protocol, port) pairs its Service defines (headless Services left out)."""
    out: dict[str, set[tuple[str, int]]] = {}
    for svc in getattr(cluster, "services", None) or []:
        spec = svc.get("spec") or {}
        ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
        ports = {(str(p.get("protocol") or "TCP").lower(), int(p["port"])) for p in spec.get("ports") or []
                 if p.get("port")}
        for ip in ips:
            if ip and ip != "None":
                out.setdefault(ip, set()).update(ports)
    return out


def service_external_ips(cluster) -> set[str]:
    """externalIPs and load-balancer ingress IPs of every Service."""
    out: set[str] = set()
    for svc in getattr(cluster, "services", None) or []:
        out.update(str(ip) for ip in (svc.get("spec") or {}).get("externalIPs") or [])
        for ing in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
            if ing.get("ip"):
                out.add(str(ing["ip"]))
    return out


def service_of_ip(cluster) -> dict[str, str]:
    out = {}
    for svc in getattr(cluster, "services", None) or []:
        spec = svc.get("spec") or {}
        for ip in spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else []):
            if ip and ip != "None":
                out[ip] = _name(svc)
    return out


def primary_ips(cluster, node: str | None) -> list[str]:
    """The node's primary IPs as kube-proxy takes them: first InternalIP (else ExternalIP) per family."""
    if cluster is None or node is None:
        return []
    obj = cluster.node(node)
    if obj is None:
        return []
    addresses = (obj.get("status") or {}).get("addresses") or []
    out: list[str] = []
    for kind in ("InternalIP", "ExternalIP"):
        for a in addresses:
            ip = str(a.get("address") or "")
            if a.get("type") == kind and ip and not any((":" in ip) == (":" in o) for o in out):
                out.append(ip)
    return out


def connections(snapshot: NodeSnapshot) -> list[ct.ConntrackEntry] | None:
    """The captured conntrack entries (None when conntrack.txt was not captured), parsed once."""
    text = snapshot.text("conntrack.txt")
    if text is None:
        return None
    return snapshot.derived("conntrack.entries", ("conntrack.txt",), lambda: ct.parse_conntrack(text))


def is_loopback(ip: str) -> bool:
    return ip.startswith("127.") or ip == "::1"

