"""What a node should have programmed, computed from the API objects the way kube-proxy does.

Mirrors kube-proxy (kubernetes/kubernetes pkg/proxy) from v1.30 to master: which Services are
proxied (``ShouldSkipService`` and the informers' label selector), per service port and IP family
the frontends (``newBaseServiceInfo``: addresses parsed sloppily as ``netutils.ParseIPSloppy`` does,
``loadBalancerSourceRanges`` trimmed), the endpoints merged from every EndpointSlice
(``EndpointSliceCache``: first address only, dedup on ip:port preferring the local copy, wrong
family skipped) and the cluster- and local-policy endpoint sets (``CategorizeEndpoints`` in
topology.go, with topology hints and the serving-terminating fallback). Where releases differ
(which hints are honoured) the kube-proxy version decides; see ``Semantics``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial

from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.errors import ParseError
from kubectl_proxydoctor.model import Endpoint, FrontendKind, ServicePortName
from kubectl_proxydoctor.netparse import canonical_ip, is_canonical_v4, source_ranges

LABEL_SERVICE_NAME = "kubernetes.io/service-name"
LABEL_PROXY_NAME = "service.kubernetes.io/service-proxy-name"
LABEL_HEADLESS = "service.kubernetes.io/headless"
LABEL_ZONE = "topology.kubernetes.io/zone"
ANNOTATION_HINTS = "service.kubernetes.io/topology-aware-hints"
ANNOTATION_TOPOLOGY_MODE = "service.kubernetes.io/topology-mode"
DEFAULT_AFFINITY_SECONDS = 10800


@dataclass(frozen=True, slots=True)
class Semantics:
    """How one kube-proxy release reads the API where releases differ (topology.go).

    ``version`` None means unknown: v1.30's reading is assumed (hints only on request, zone hints
    only), the oldest layout this tool knows."""

    version: tuple[int, int] | None = None

    @property
    def hints_need_request(self) -> bool:
        """Before 1.33 hints are used only when the Service asks (topology annotation or
        trafficDistribution); from 1.33 (TopologyAwareHints GA, #130742) whenever present."""
        return self.version is None or self.version < (1, 33)

    @property
    def node_hints(self) -> bool:
        """forNodes hints (PreferSameNode): PreferSameTrafficDistribution, on by default from 1.34."""
        return self.version is not None and self.version >= (1, 34)

    def describe(self) -> str:
        v = "unknown version (v1.30 assumed)" if self.version is None else "v{}.{}".format(*self.version)
        hints = "hints only when the Service asks" if self.hints_need_request else "hints whenever set"
        nodes = "forNodes honoured" if self.node_hints else "forNodes ignored"
        return f"{v}: {hints}, {nodes}"


V130 = Semantics()


def ip_family(ip: str) -> int:
    """6 for an IPv6 address or CIDR, else 4 (utilnet.IsIPv6String: anything not IPv6 counts as 4)."""
    return 6 if ":" in ip else 4


@dataclass(slots=True)
class ApiEndpoint:
    """One endpoint of one service port as kube-proxy's EndpointSliceCache keeps it."""

    ip: str
    port: int
    node: str | None
    zone: str | None
    ready: bool
    serving: bool
    terminating: bool
    is_local: bool
    zone_hints: frozenset[str]
    node_hints: frozenset[str]
    slice: str
    endpoint: Endpoint  # Endpoint(ip, port): made once, shared by the policies' sets

    @property
    def conditions(self) -> str:
        """Human summary, e.g. ``ready`` or ``not ready, serving, terminating``."""
        if self.ready and not self.terminating:
            return "ready"
        parts = ["ready" if self.ready else "not ready"]
        parts.append("serving" if self.serving else "not serving")
        if self.terminating:
            parts.append("terminating")
        return ", ".join(parts)


@dataclass(slots=True)  # one per service port (10k+)
class ExpectedFrontend:
    """An address this node should accept for a service port, and the policy it applies."""

    kind: FrontendKind
    ip: str | None
    port: int
    protocol: str
    policy: str = "cluster"  # "cluster" | "local"
    source_ranges: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        if self.kind == "node-port":
            return f"nodeport:{self.port}" if self.ip is None else f"{self.ip}:{self.port}(nodeport)"
        return str(Endpoint(self.ip or "", self.port))


@dataclass(slots=True)  # one per service port (10k+)
class ExpectedPort:
    """What kube-proxy should program for one service port in one IP family."""

    name: ServicePortName
    family: int
    service_type: str
    cluster_ip: str
    port: int
    node_port: int = 0
    external_ips: list[str] = field(default_factory=list)
    load_balancer_ips: list[str] = field(default_factory=list)
    source_ranges: list[str] = field(default_factory=list)
    health_check_node_port: int = 0
    internal_local: bool = False
    external_local: bool = False
    affinity_seconds: int | None = None
    topology_mode: str = ""
    all_endpoints: list[ApiEndpoint] = field(default_factory=list)  # every endpoint the slices list
    cluster_endpoints: list[Endpoint] = field(default_factory=list)
    local_endpoints: list[Endpoint] = field(default_factory=list)
    has_any_endpoints: bool = False
    frontends: list[ExpectedFrontend] = field(default_factory=list)

    @property
    def externally_accessible(self) -> bool:
        return bool(self.node_port or self.load_balancer_ips or self.external_ips)

    @property
    def uses_cluster_endpoints(self) -> bool:
        return not self.internal_local or self.externally_accessible

    @property
    def uses_local_endpoints(self) -> bool:
        return self.internal_local or (self.external_local and self.externally_accessible)

    @property
    def reachable_endpoints(self) -> list[Endpoint]:
        """Every endpoint this node may send new connections to (union of both policies)."""
        if not self.local_endpoints or self.local_endpoints == self.cluster_endpoints:
            return list(self.cluster_endpoints)
        return sorted(set(self.cluster_endpoints) | set(self.local_endpoints), key=Endpoint.sort_key)

    def endpoints_for(self, policy: str) -> list[Endpoint]:
        return list(self.local_endpoints if policy == "local" else self.cluster_endpoints)

    def no_endpoints_verdict(self, policy: str) -> str | None:
        """What kube-proxy does with a new connection when the policy's set is empty."""
        if self.endpoints_for(policy):
            return None
        return "drop" if self.has_any_endpoints else "reject"

    def api_endpoint(self, ep: Endpoint) -> ApiEndpoint | None:
        for candidate in self.all_endpoints:
            if candidate.ip == ep.ip and candidate.port == ep.port:
                return candidate
        return None

    def why_not_used(self, ep: Endpoint, policy: str = "cluster") -> str:
        """Why an endpoint is not in this port's expected set (for stale-endpoint messages)."""
        api = self.api_endpoint(ep)
        if api is None:
            same_ip = [a for a in self.all_endpoints if a.ip == ep.ip]
            if same_ip:
                return f"the API lists {ep.ip} on port {same_ip[0].port}, not {ep.port}"
            # the API dropped it; whether its pod still runs is not in the evidence
            return "no EndpointSlice of the service lists it any more"
        if api.terminating:
            return f"it is terminating ({api.conditions}) and must not take new connections"
        if not api.ready:
            return f"it is not ready ({api.conditions})"
        if policy == "local" and not api.is_local:
            return f"it runs on node {api.node or '?'}, and the Local policy only uses this node's endpoints"
        if self.topology_mode:
            return f"topology hints route it away from this node ({self.topology_mode})"
        return "the API does not select it for this node"


@dataclass
class ExpectedNode:
    """Everything the API says one node's kube-proxy should program."""

    node: str | None
    zone: str | None
    families: tuple[int, ...]
    ports: dict[tuple[ServicePortName, int], ExpectedPort] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # "ns/name" -> why kube-proxy ignores it
    services: dict[str, dict] = field(default_factory=dict)  # "ns/name" -> Service object

    def port(self, name: ServicePortName, family: int = 4) -> ExpectedPort | None:
        return self.ports.get((name, family))

    def ports_of(self, service: str) -> list[ExpectedPort]:
        return [p for (n, _), p in sorted(self.ports.items()) if n.service == service]


# -- Services -----------------------------------------------------------------------------------


def _str(obj: dict, *path: str) -> str:
    cur: object = obj
    for key in path:
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(key)
    return cur if isinstance(cur, str) else ""


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


def _int(value: object, what: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParseError("api", f"{what}: expected an integer, got {value!r}")
    return value


def skip_reason(service: dict) -> str | None:
    """Why kube-proxy does not proxy this Service at all, or None when it does."""
    labels = service.get("metadata", {}).get("labels") or {}
    spec = service.get("spec") or {}
    if LABEL_PROXY_NAME in labels:
        return f"label {LABEL_PROXY_NAME}={labels[LABEL_PROXY_NAME]} hands it to another proxy"
    if LABEL_HEADLESS in labels:
        return f"label {LABEL_HEADLESS} marks it headless"
    if spec.get("type") == "ExternalName":
        return "type ExternalName (DNS only)"
    cluster_ip = spec.get("clusterIP")
    if cluster_ip in (None, "", "None"):
        return "headless (clusterIP None)"
    return None


def _cluster_ip_for_family(spec: dict, family: int) -> str:
    ips = [ip for ip in _list(spec.get("clusterIPs")) if isinstance(ip, str)]
    if not ips and isinstance(spec.get("clusterIP"), str):
        ips = [spec["clusterIP"]]
    for raw in ips:
        ip = canonical_ip(raw)
        if ip and ip_family(ip) == family:
            return ip
    return ""


def _is_vip_mode(ingress: dict) -> bool:
    mode = ingress.get("ipMode")
    return mode is None or mode == "VIP"


def external_policy_local(service: dict) -> bool:
    spec = service.get("spec") or {}
    accessible = spec.get("type") in ("LoadBalancer", "NodePort") or bool(_list(spec.get("externalIPs")))
    return accessible and spec.get("externalTrafficPolicy") == "Local"


def _affinity(spec: dict) -> int | None:
    if spec.get("sessionAffinity") != "ClientIP":
        return None
    seconds = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
    return _int(seconds, "sessionAffinityConfig.clientIP.timeoutSeconds") or DEFAULT_AFFINITY_SECONDS


def _hints_enabled(service: dict, semantics: Semantics = V130) -> bool:
    """Before 1.33 hints are used only when the Service asks (annotation, or trafficDistribution
    set); later releases use them whenever the slices carry them."""
    if not semantics.hints_need_request:
        return True
    annotations = service.get("metadata", {}).get("annotations") or {}
    value = annotations.get(ANNOTATION_HINTS, annotations.get(ANNOTATION_TOPOLOGY_MODE, ""))
    if (service.get("spec") or {}).get("trafficDistribution"):
        return True
    return value not in ("", "disabled", "Disabled")


# -- EndpointSlices -------------------------------------------------------------------------------


def _hint_names(value: object) -> frozenset[str]:
    return frozenset(str(h.get("name", "")) for h in _list(value) if isinstance(h, dict))


_NO_HINTS: frozenset[str] = frozenset()


# the ApiEndpoint fields between the port and the endpoint: node, zone, ready, serving, terminating,
# is_local, zone hints, node hints, slice
_Fields = tuple[str | None, str | None, bool, bool, bool, bool, frozenset[str], frozenset[str], str]


def _slice_endpoints(slice_obj: dict, node_name: str | None, family: int) -> list[tuple[str, bool, _Fields]]:
    """The endpoints of one slice in ``family``: (ip, is local, the other ApiEndpoint fields after
    the port), read in one pass (a big node's slices hold 100k endpoints)."""
    name = _str(slice_obj, "metadata", "name")
    out: list[tuple[str, bool, _Fields]] = []
    append = out.append
    v6 = family == 6
    for ep in _list(slice_obj.get("endpoints")):
        if not isinstance(ep, dict):
            continue
        addresses = ep.get("addresses")
        if not isinstance(addresses, list) or not addresses:
            continue
        first = addresses[0]
        ip = first if isinstance(first, str) and is_canonical_v4(first) else canonical_ip(first)
        if ip is None:
            continue  # kube-proxy cannot parse it either
        if (":" in ip) is not v6:
            continue  # kube-proxy skips the other family's endpoints
        cond = ep.get("conditions") or _NO_CONDITIONS
        hints = ep.get("hints")
        node = ep.get("nodeName")
        if not isinstance(node, str):
            node = None
        zone = ep.get("zone")
        ready, serving = cond.get("ready"), cond.get("serving")
        local = bool(node_name) and node == node_name
        append((ip, local, (
            node,
            zone if isinstance(zone, str) else None,
            ready is None or ready is True,
            serving is None or serving is True,
            cond.get("terminating") is True,
            local,
            _hint_names(hints.get("forZones")) if hints else _NO_HINTS,
            _hint_names(hints.get("forNodes")) if hints else _NO_HINTS,
            name,
        )))
    return out


_NO_CONDITIONS: dict = {}


def endpoints_by_port(
    slices: Iterable[dict], node_name: str | None, family: int
) -> dict[tuple[str, str], list[ApiEndpoint]]:
    """(port name, protocol) -> endpoints merged over a service's slices, as EndpointSliceCache:
    first address only, one entry per ip:port (the local copy wins), sorted by address."""
    merged: dict[tuple[str, str], dict[tuple[str, int], ApiEndpoint]] = {}
    for slice_obj in sorted(slices, key=lambda s: _str(s, "metadata", "name")):
        if slice_obj.get("addressType") not in ("IPv4", "IPv6", None):
            continue
        ports = []
        for port in _list(slice_obj.get("ports")):
            if not isinstance(port, dict) or not isinstance(port.get("name"), str):
                continue  # kube-proxy ignores ports with a nil name
            number = _int(port.get("port"), f"EndpointSlice {_str(slice_obj, 'metadata', 'name')} port")
            if number == 0:
                continue
            ports.append((merged.setdefault((port["name"], port.get("protocol") or "TCP"), {}), number))
        if not ports:
            continue
        for ip, local, rest in _slice_endpoints(slice_obj, node_name, family):
            for bucket, number in ports:
                key = _endpoint((ip, number))
                if local or key not in bucket:
                    bucket[key] = ApiEndpoint(ip, number, *rest, key)
    # sorted as (ip, port) strings-first tuples: the plain tuple order, not Endpoint's numeric one
    return {k: [v[e] for e in sorted(v, key=tuple)] for k, v in merged.items()}


_endpoint = partial(tuple.__new__, Endpoint)  # Endpoint((ip, port)) without a Python-level call


# -- topology.go --------------------------------------------------------------------------------


def topology_mode(
    endpoints: list[ApiEndpoint], hints_enabled: bool, node: str | None, zone: str | None,
    node_hints: bool = True,
) -> str:
    """ "" (no topology), "PreferSameNode" or "PreferSameZone" (topologyModeFromHints)."""
    if not hints_enabled:
        return ""
    ready = [e for e in endpoints if e.ready]
    if not ready:
        return ""
    if node_hints and all(e.node_hints for e in ready) and any(node in e.node_hints for e in ready):
        return "PreferSameNode"
    if zone and all(e.zone_hints for e in ready) and any(zone in e.zone_hints for e in ready):
        return "PreferSameZone"
    return ""


def _available(ep: ApiEndpoint, mode: str, node: str | None, zone: str | None) -> bool:
    if mode == "PreferSameNode":
        return node in ep.node_hints
    if mode == "PreferSameZone":
        return zone in ep.zone_hints
    return True


def categorize(
    port: ExpectedPort, hints_enabled: bool, node: str | None, zone: str | None, node_hints: bool = True
) -> None:
    """Fill the cluster- and local-policy endpoint sets (CategorizeEndpoints); all_endpoints is
    sorted by address, so the filtered sets are too."""
    eps = port.all_endpoints
    port.cluster_endpoints, port.local_endpoints, port.has_any_endpoints = [], [], False
    if not eps:
        return
    if port.uses_cluster_endpoints:
        port.topology_mode = mode = topology_mode(eps, hints_enabled, node, zone, node_hints)
        cluster = [e for e in eps if e.ready and (not mode or _available(e, mode, node, zone))]
        if not cluster:
            cluster = [e for e in eps if e.serving and e.terminating]
        port.cluster_endpoints = [e.endpoint for e in cluster]
        port.has_any_endpoints = bool(cluster)
    if not port.uses_local_endpoints:
        return
    local_ready = any(e.ready and e.is_local for e in eps)
    local_terminating = any(not e.ready and e.serving and e.terminating and e.is_local for e in eps)
    if any(e.ready or (e.serving and e.terminating) for e in eps):
        port.has_any_endpoints = True
    if local_ready:
        port.local_endpoints = [e.endpoint for e in eps if e.is_local and e.ready]
    elif local_terminating:
        port.local_endpoints = [e.endpoint for e in eps if e.is_local and e.serving and e.terminating]


# -- the node -----------------------------------------------------------------------------------


def _frontends(p: ExpectedPort) -> list[ExpectedFrontend]:
    proto = p.name.protocol
    internal = "local" if p.internal_local else "cluster"
    external = "local" if p.external_local else "cluster"
    out = [ExpectedFrontend("cluster-ip", p.cluster_ip, p.port, proto, internal)]
    out += [ExpectedFrontend("external-ip", ip, p.port, proto, external) for ip in p.external_ips]
    out += [
        ExpectedFrontend("load-balancer", ip, p.port, proto, external, list(p.source_ranges))
        for ip in p.load_balancer_ips
    ]
    if p.node_port:
        out.append(ExpectedFrontend("node-port", None, p.node_port, proto, external))
    return out


def node_zone(cluster: ClusterState, node_name: str | None) -> str | None:
    node = cluster.node(node_name) if node_name else None
    if node is None:
        return None
    return (node["metadata"].get("labels") or {}).get(LABEL_ZONE) or None


def expected_for_node(
    cluster: ClusterState,
    node_name: str | None,
    families: tuple[int, ...] = (4, 6),
    semantics: Semantics = V130,
) -> ExpectedNode:
    """What kube-proxy on ``node_name`` should program for every Service, per IP family, read
    the way the kube-proxy release in ``semantics`` reads the API."""
    zone = node_zone(cluster, node_name)
    result = ExpectedNode(node=node_name, zone=zone, families=families)
    slices_by_service: dict[str, list[dict]] = {}
    for s in cluster.endpointslices:
        labels = s.get("metadata", {}).get("labels") or {}
        svc = labels.get(LABEL_SERVICE_NAME)
        if not svc or LABEL_PROXY_NAME in labels or LABEL_HEADLESS in labels:
            continue
        slices_by_service.setdefault(f"{_str(s, 'metadata', 'namespace')}/{svc}", []).append(s)
    for service in cluster.services:
        meta = service.get("metadata") or {}
        key = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        result.services[key] = service
        reason = skip_reason(service)
        if reason:
            result.skipped[key] = reason
            continue
        spec = service.get("spec") or {}
        namespace, service_name = meta.get("namespace", ""), meta.get("name", "")
        for family in families:
            cluster_ip = _cluster_ip_for_family(spec, family)
            if not cluster_ip:
                continue
            by_port = endpoints_by_port(slices_by_service.get(key, []), node_name, family)
            shared: dict | None = None  # what every port of the service has, read at its first port
            for port in _list(spec.get("ports")):
                if not isinstance(port, dict):
                    continue
                protocol = port.get("protocol") or "TCP"
                name = ServicePortName(namespace, service_name, port.get("name") or "", protocol)
                number = _int(port.get("port"), f"Service {name.service} port")
                node_port = _int(port.get("nodePort"), f"Service {name.service} nodePort")
                if shared is None:  # after the first port's numbers: a bad one is named first
                    shared = _service_fields(service, spec, family)
                    hints = _hints_enabled(service, semantics)
                p = ExpectedPort(name=name, family=family, cluster_ip=cluster_ip, port=number,
                                 node_port=node_port, all_endpoints=by_port.get((name.port, protocol), []),
                                 **shared)
                categorize(p, hints, node_name, zone, semantics.node_hints)
                p.frontends = _frontends(p)
                result.ports[(name, family)] = p
    return result


def _service_fields(service: dict, spec: dict, family: int) -> dict:
    """The ExpectedPort fields every port of a Service has in ``family``, read once per Service (its
    ports share the lists: the expected view is read-only)."""
    ext_local = external_policy_local(service)
    lb_ips = [
        ip
        for ing in _list(((service.get("status") or {}).get("loadBalancer") or {}).get("ingress"))
        if isinstance(ing, dict) and _is_vip_mode(ing)
        for ip in [canonical_ip(ing.get("ip"))]
        if ip and ip_family(ip) == family
    ]
    external_ips = [ip for ip in map(canonical_ip, _list(spec.get("externalIPs"))) if ip]
    return {
        "service_type": spec.get("type") or "ClusterIP",
        "external_ips": [ip for ip in external_ips if ip_family(ip) == family],
        "load_balancer_ips": lb_ips,
        "source_ranges": [
            c for c in source_ranges(spec.get("loadBalancerSourceRanges")) if ip_family(c) == family
        ],
        "health_check_node_port": (
            _int(spec.get("healthCheckNodePort"), "healthCheckNodePort")
            if spec.get("type") == "LoadBalancer" and ext_local
            else 0
        ),
        "internal_local": spec.get("internalTrafficPolicy") == "Local",
        "external_local": ext_local,
        "affinity_seconds": _affinity(spec),
    }
