"""What a capture says about the node around its rules, for explaining a packet's fate.

Node addresses (ip-addr.json), the API's EndpointSlices and Services (api.json: endpoints with
their pods, nodes and conditions; Service addresses and why kube-proxy skips a Service), the
node's name and InternalIPs, and conntrack.txt. ``None`` always means "not captured".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kubectl_proxydoctor.model import Endpoint
from kubectl_proxydoctor.netparse import canonical_ip
from kubectl_proxydoctor.snapshot import NodeSnapshot


@dataclass(frozen=True)
class EndpointInfo:
    """What the API's EndpointSlices say about one endpoint address."""

    ip: str
    ports: frozenset[int]
    pod: str | None
    node: str | None
    ready: bool
    terminating: bool
    service: str


@dataclass
class NodeFacts:
    """What the capture says about the node around its rules; None means not captured."""

    node: str | None = None
    addresses: set[str] | None = None
    listening: set[tuple[str, int]] | None = None  # (protocol, port); no capture file holds it yet
    endpoints: dict[str, list[EndpointInfo]] | None = None  # by IP
    pods: dict[str, str] = field(default_factory=dict)  # "ns/name" -> IP
    pod_names_seen: dict[str, list[str]] = field(default_factory=dict)  # bare name -> ["ns/name", ...]
    pod_nodes: dict[str, str] = field(default_factory=dict)  # pod IP -> node
    pod_names: dict[str, str] = field(default_factory=dict)  # pod IP -> name
    service_ips: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # IP -> (svc, skip why)
    node_ips: list[str] = field(default_factory=list)  # the API Node's InternalIPs
    conntrack_text: str | None = None

    def is_node_address(self, ip: str) -> bool | None:
        if ip.startswith("127.") or ip == "::1":
            return True
        return None if self.addresses is None else ip in self.addresses

    def endpoint(self, ep: Endpoint, service: str | None = None) -> EndpointInfo | None:
        """The API's entry for ``ep`` (in ``service``'s EndpointSlices when given)."""
        for info in (self.endpoints or {}).get(ep.ip, []):
            if (not info.ports or ep.port in info.ports) and service in (None, info.service):
                return info
        return None


# -- building them -----------------------------------------------------------------------------------------


def node_facts(snapshot: NodeSnapshot) -> NodeFacts:
    """The node facts of a snapshot (computed once per snapshot)."""
    return snapshot.derived("fate.node_facts", ("ip-addr.json", "api.json", "meta.json", "conntrack.txt"),
                            lambda: _build_facts(snapshot))


def _build_facts(snapshot: NodeSnapshot) -> NodeFacts:
    from kubectl_proxydoctor.cluster import of_capture
    from kubectl_proxydoctor.errors import ProxyDoctorError

    try:
        cluster = of_capture(snapshot)  # the snapshot's one decoded api.json
    except ProxyDoctorError:
        cluster = None
    return facts_with(snapshot, cluster)


def facts_with(snapshot: NodeSnapshot, cluster, node: str | None = None) -> NodeFacts:
    """The node facts from the snapshot and an already decoded ClusterState (or None): what
    NodeState.facts builds, so api.json is not decoded again."""
    from kubectl_proxydoctor.errors import ProxyDoctorError
    from kubectl_proxydoctor.nodeinfo import local_addresses

    facts = NodeFacts(node=node or snapshot.node)
    if snapshot.has("ip-addr.json"):
        try:
            facts.addresses = local_addresses(snapshot)
        except ProxyDoctorError:
            facts.addresses = None
    facts.conntrack_text = snapshot.text("conntrack.txt")
    if cluster is not None:
        add_cluster(facts, cluster)
    return facts


def add_cluster(facts: NodeFacts, cluster) -> None:
    """Endpoints, pod names and service addresses from the API objects."""
    from kubectl_proxydoctor.expected import skip_reason

    node = cluster.node(facts.node) if facts.node else None
    addresses = ((node or {}).get("status") or {}).get("addresses") or []
    facts.node_ips = [ip for ip in (canonical_ip(a.get("address")) for a in addresses
                                    if isinstance(a, dict) and a.get("type") == "InternalIP") if ip]
    facts.endpoints = {}
    for sl in cluster.endpointslices:
        if sl.get("addressType", "IPv4") not in ("IPv4", "IPv6"):  # FQDN slices: kube-proxy ignores them
            continue
        meta = sl.get("metadata") or {}
        owner = (meta.get("labels") or {}).get("kubernetes.io/service-name", "")
        svc = f"{meta.get('namespace', '')}/{owner}"
        ports = frozenset(p["port"] for p in sl.get("ports") or [] if isinstance(p, dict)
                          and isinstance(p.get("port"), int))
        for ep in sl.get("endpoints") or []:
            if not isinstance(ep, dict):
                continue
            cond = ep.get("conditions") or {}
            ref = ep.get("targetRef") or {}
            pod = ref.get("name") if ref.get("kind") == "Pod" else None
            node = ep.get("nodeName") if isinstance(ep.get("nodeName"), str) else None
            for raw in ep.get("addresses") or []:
                ip = canonical_ip(raw)  # as kube-proxy parses it (ParseIPSloppy); None: not an IP
                if ip is None:
                    continue
                ready, terminating = cond.get("ready") is not False, cond.get("terminating") is True
                facts.endpoints.setdefault(ip, []).append(
                    EndpointInfo(ip, ports, pod, node, ready, terminating, svc))
                if pod:
                    _add_pod(facts, ref.get("namespace") or meta.get("namespace", ""), pod, ip, node)
    for pod in getattr(cluster, "pods", None) or []:
        meta = pod.get("metadata") or {}
        ip = canonical_ip((pod.get("status") or {}).get("podIP"))
        if meta.get("name") and ip:
            node_name = (pod.get("spec") or {}).get("nodeName")
            _add_pod(facts, meta.get("namespace", ""), meta["name"], ip, node_name)
    for service in cluster.services:
        meta = service.get("metadata") or {}
        key = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        spec = service.get("spec") or {}
        why = skip_reason(service)
        ips = [*(spec.get("clusterIPs") or [spec.get("clusterIP")]), *(spec.get("externalIPs") or [])]
        ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        ips += [i.get("ip") for i in ingress if isinstance(i, dict)]
        for raw in ips:
            ip = canonical_ip(raw)
            if ip is not None:
                facts.service_ips.setdefault(ip, (key, why))


def _add_pod(facts: NodeFacts, namespace: str, name: str, ip: str, node: object) -> None:
    key = f"{namespace}/{name}"
    if key not in facts.pods:
        facts.pods[key] = ip
        facts.pod_names_seen.setdefault(name, []).append(key)
    facts.pod_names.setdefault(ip, name)
    if isinstance(node, str) and node:
        facts.pod_nodes.setdefault(ip, node)


# -- sources by name -------------------------------------------------------------------------------


def resolve_source(text: str, facts: NodeFacts, family: int) -> str:
    """An IP for ``--src``: an IP as given, ``node`` (this node's address of ``family``), or a pod
    name (``NAME`` or ``NAMESPACE/NAME``) from the API's EndpointSlices / pods. ValueError says why not."""
    import ipaddress

    text = text.strip()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if text == "node":
        candidates = [*facts.node_ips, *sorted(facts.addresses or ())]
        for candidate in candidates:
            addr = ipaddress.ip_address(candidate)
            if addr.version == family and not addr.is_loopback and not addr.is_link_local:
                return candidate
        raise ValueError("'node': this node's address is not in the capture (no ip-addr.json and no "
                         "InternalIP in api.json)")
    ip: str | None
    if "/" in text:
        name, ip = text, facts.pods.get(text)
    else:
        keys = facts.pod_names_seen.get(text, [])
        if len({facts.pods[k] for k in keys}) > 1:
            raise ValueError(f"pod name {text!r} is ambiguous ({', '.join(keys)}): give NAMESPACE/NAME")
        name, ip = text, facts.pods.get(keys[0]) if keys else None
    if ip is None:
        if facts.endpoints is None:
            raise ValueError(f"{text!r} is not an IP address, and pod names need the API (api.json)")
        raise ValueError(f"{text!r} is not an IP address, 'node', or a pod the API's EndpointSlices name")
    if ipaddress.ip_address(ip).version != family:
        raise ValueError(f"pod {name} has {ip}, not an IPv{family} address")
    return ip
