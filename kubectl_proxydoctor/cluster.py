"""ClusterState: the API objects that decide what a node should have programmed.

Objects are kept as the plain JSON dicts ``kubectl get -o json`` prints (the same from a live
client via ``ApiClient.sanitize_for_serialization``), so live and offline reads are identical.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kubectl_proxydoctor.errors import ParseError

if TYPE_CHECKING:
    from kubectl_proxydoctor.snapshot import NodeSnapshot


# the fields of each kept kind that are read as objects or lists (``[]``: a list whose objects are
# read further; elements that are not objects are skipped by the readers), so an api.json whose
# object has e.g. a string ``status`` is a ParseError, not an AttributeError or a false drift later
_SHAPES: dict[str, tuple[tuple[str, ...], ...]] = {
    "*": (("metadata", "labels"), ("metadata", "annotations"), ("spec",), ("status",)),
    "Service": (("spec", "ports", "[]"), ("spec", "clusterIPs", "list"), ("spec", "externalIPs", "list"),
                ("spec", "loadBalancerSourceRanges", "list"), ("spec", "sessionAffinityConfig", "clientIP"),
                ("status", "loadBalancer", "ingress", "[]")),
    "EndpointSlice": (("ports", "[]"), ("endpoints", "[]", "conditions"), ("endpoints", "[]", "targetRef"),
                      ("endpoints", "[]", "addresses", "list"), ("endpoints", "[]", "hints")),
    "Node": (("status", "addresses", "[]"), ("status", "nodeInfo")),
    "ConfigMap": (("data",),),
}


Trie = dict[str, tuple["Trie", bool]]  # step -> (the steps after it, whether a path ends there)


def _trie(paths: tuple[tuple[str, ...], ...]) -> Trie:
    root: Trie = {}
    for path in paths:
        node = root
        for i, step in enumerate(path):
            sub, end = node.get(step, ({}, False))
            node[step] = (sub, end or i == len(path) - 1)
            node = sub
    return root


_TRIES: dict[str, Trie] = {kind: _trie(_SHAPES["*"] + _SHAPES.get(kind, ())) for kind in _SHAPES}


Check = Callable[[object], bool]


def _compile(node: Trie) -> Check:
    """One function accepting what _walk accepts below a trie node: the steps are looked at once,
    here, so the check of a big node's objects (100k endpoints) runs no recursion per step, and
    names nothing until something is wrong (_walk then says where)."""
    if "[]" in node or "list" in node:
        ((step, (sub, _end)),) = node.items()  # a list step is the only step of its node
        each = _compile(sub) if step == "[]" and sub else None
        if each is None:
            return lambda value: value is None or isinstance(value, list)

        def check_list(value: object) -> bool:
            if value is None:
                return True
            if not isinstance(value, list):
                return False
            # elements that are not objects are skipped, as the readers do
            return all(each(e) for e in value if isinstance(e, dict))

        return check_list
    leaves = tuple(step for step, (sub, _end) in node.items() if not sub)  # must be an object
    # must be a list whose elements are not looked into (e.g. an endpoint's addresses): no call
    lists = tuple(step for step, (sub, end) in node.items() if not end and _plain_list(sub))
    inner = tuple((step, end, _compile(sub)) for step, (sub, end) in node.items()
                  if sub and step not in lists)

    def check_object(value: object) -> bool:
        if value is None:
            return True
        if not isinstance(value, dict):
            return False
        get = value.get
        for step in leaves:
            child = get(step)
            if child is not None and not isinstance(child, dict):
                return False
        for step in lists:
            child = get(step)
            if child is not None and not isinstance(child, list):
                return False
        for step, end, sub in inner:
            child = get(step)
            if child is not None and ((end and not isinstance(child, dict)) or not sub(child)):
                return False
        return True

    return check_object


def _plain_list(node: Trie) -> bool:
    """Whether the node is one list step with nothing looked at inside the elements."""
    return len(node) == 1 and any(step in node and not node[step][0] for step in ("[]", "list"))


_CHECKS: dict[str, Check] = {kind: _compile(trie) for kind, trie in _TRIES.items()}


def _fits(value: object, node: Trie) -> bool:
    """Whether ``value`` fits a shape trie: its compiled check (``_CHECKS`` holds each kind's)."""
    check = next((c for kind, c in _CHECKS.items() if _TRIES[kind] is node), None)
    return (check or _compile(node))(value)


def _check_shape(item: dict, origin: str, index: int) -> None:
    """ParseError when a field the checks read as an object (or list) is another JSON type."""
    kind = str(item.get("kind"))
    if (_CHECKS.get(kind) or _CHECKS["*"])(item):
        return
    for path in _SHAPES["*"] + _SHAPES.get(kind, ()):  # the first misfit, named
        _walk(item, path, f"item {index} ({kind} {item['metadata'].get('name', '?')})", origin)


def _walk(value: object, path: tuple[str, ...], where: str, origin: str) -> None:
    if not path or value is None:
        return
    step, rest = path[0], path[1:]
    if step in ("[]", "list"):
        if not isinstance(value, list):
            raise ParseError(origin, f"{where}: expected a list")
        for i, element in enumerate(value):
            if step == "[]" and isinstance(element, dict):  # other junk is skipped, as the readers do
                _walk(element, rest, f"{where}[{i}]", origin)
        return
    if not isinstance(value, dict):
        raise ParseError(origin, f"{where}: expected an object")
    child = value.get(step)
    if child is not None and not rest and not isinstance(child, dict):
        raise ParseError(origin, f"{where}.{step}: expected an object")
    _walk(child, rest, f"{where}.{step}", origin)


@dataclass
class ClusterState:
    """Services, EndpointSlices, Nodes and kube-proxy's config as the API returned them."""

    services: list[dict] = field(default_factory=list)
    endpointslices: list[dict] = field(default_factory=list)
    nodes: list[dict] = field(default_factory=list)
    configmaps: list[dict] = field(default_factory=list)  # kube-proxy / cilium-config
    daemonsets: list[dict] = field(default_factory=list)  # kube-proxy / cilium
    pods: list[dict] = field(default_factory=list)  # kube-proxy pods, when the capture holds them
    # networking.k8s.io ServiceCIDRs (1.33 GA); read only when the API served them or api.json holds
    # them (every 1.33+ cluster has the default "kubernetes" one): otherwise unknown, not empty
    servicecidrs: list[dict] = field(default_factory=list)
    servicecidrs_read: bool = False
    sources: dict[str, str] = field(default_factory=dict)  # "list services" -> "ok" | "forbidden: ..."
    origin: str = "live"

    _KINDS = {
        "Service": "services",
        "EndpointSlice": "endpointslices",
        "Node": "nodes",
        "ConfigMap": "configmaps",
        "DaemonSet": "daemonsets",
        "Pod": "pods",
    }

    @classmethod
    def from_list(cls, doc: object, origin: str = "api.json") -> ClusterState:
        """Build from a v1 List (``kubectl get ... -o json``), as found in a capture's api.json."""
        if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
            raise ParseError(origin, "expected a Kubernetes List object with 'items'")
        state = cls(origin=origin)
        for i, item in enumerate(doc["items"]):
            if not isinstance(item, dict) or not isinstance(item.get("metadata"), dict):
                raise ParseError(origin, f"item {i} is not a Kubernetes object")
            attr = cls._KINDS.get(str(item.get("kind")))
            if attr:
                _check_shape(item, origin, i)
                getattr(state, attr).append(item)
            elif item.get("kind") == "ServiceCIDR":
                state.servicecidrs.append(item)
                state.servicecidrs_read = True
        for attr in cls._KINDS.values():
            state.sources[f"list {attr}"] = "ok"
        return state

    @classmethod
    def from_json_text(cls, text: str, origin: str = "api.json") -> ClusterState:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise ParseError(origin, f"not valid JSON: {e.msg}", e.lineno) from e
        return cls.from_list(doc, origin)

    def to_list(self) -> dict:
        items = [*self.services, *self.endpointslices, *self.nodes, *self.configmaps, *self.daemonsets,
                 *self.pods, *self.servicecidrs]
        return {"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items}

    def load_balancer_ips(self) -> set[str]:
        """Every Service's LoadBalancer ingress IP (status.loadBalancer.ingress[].ip)."""
        ips: set[str] = set()
        for svc in self.services:
            for ing in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
                if isinstance(ing, dict) and ing.get("ip"):
                    ips.add(str(ing["ip"]))
        return ips

    def service_cidrs(self) -> list[str] | None:
        """Every ServiceCIDR's spec.cidrs (what kube-proxy's informer joins), None when not read."""
        if not self.servicecidrs_read:
            return None
        cidrs = []
        for obj in self.servicecidrs:
            for cidr in (obj.get("spec") or {}).get("cidrs") or []:
                if isinstance(cidr, str) and cidr not in cidrs:
                    cidrs.append(cidr)
        return cidrs

    def node(self, name: str | None) -> dict | None:
        for n in self.nodes:
            if n["metadata"].get("name") == name:
                return n
        return None


def of_capture(snapshot: NodeSnapshot) -> ClusterState | None:
    """The API objects of a capture (its api.json), decoded once per snapshot and shared by every
    reader (NodeState, the IPVS tracer's names); None when it has none. Readers must not change
    it (filter into a copy). An api.json that cannot be read raises its ParseError each time."""
    text = snapshot.text("api.json")
    if text is None:
        return None

    def decode() -> ClusterState | ParseError:
        try:
            return ClusterState.from_json_text(text, origin=f"{snapshot.origin}/api.json")
        except ParseError as e:
            return e

    found = snapshot.derived("cluster.api-json", ("api.json",), decode)
    if isinstance(found, ParseError):
        raise found
    return found
