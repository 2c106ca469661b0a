"""Every nftables layout kube-proxy has shipped (v1.29 to master), in one place.

Read from kubernetes/kubernetes pkg/proxy/nftables/proxier.go and proxier_test.go at several
commits (the fixtures under tests/fixtures/upstream/nftables name them):

- **v1.29-v1.33** (``filter-prerouting``): filter base chains ``filter-prerouting``,
  ``filter-input``, ``filter-forward``, ``filter-output`` at dstnat-10 (-110) and
  ``filter-output-post-dnat`` at dstnat+10 (-90); every service port has endpoint chains
  (``numgen random mod N vmap { i : goto endpoint-... }``, each ending in ``dnat to ip:port``);
  masquerading marks by ``jump mark-for-masquerade``.
- **v1.34-v1.35** (``pre-dnat filter chains``, #132456, backported to 1.33.x):
  ``filter-prerouting-pre-dnat`` / ``filter-output-pre-dnat`` at -110 and
  ``filter-input/forward/output`` at 0; ``filter-output-post-dnat`` gone; otherwise as before.
- **v1.36+** (``endpoint-less DNAT``, #135800, #136499): no ``mark-for-masquerade`` chain (marks
  are inline: ``meta mark set meta mark | 0x4000``); ``masquerading`` masquerades marked packets
  and those matching the ``hairpin-connections`` set; the ClusterIP masquerade rule sits in
  ``services``; services without session affinity DNAT from the service chain
  (``dnat ip to numgen random mod N map { 0 : ip . port, ... }``: nft JSON ``dnat.addr`` is a
  map whose data is ``concat [ip, port]``, no ``port`` key); ClientIP affinity keeps endpoint
  chains and ``numgen ... vmap``. From v1.37 (#140723, #140960) a single endpoint may be DNATed
  directly (``dnat to ip:port`` in the service chain).

Drop of traffic to unallocated cluster IPs (``cluster-ips-check``) follows the ServiceCIDRs
(``ip daddr { <cidrs> } drop``) in every generation read.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from kubectl_proxydoctor.formats.nft_model import NftChain, NftRule, NftTable
from kubectl_proxydoctor.model import Endpoint, ServicePortName

# dispatch maps and sets (every generation)
SERVICE_IPS, SERVICE_NODEPORTS = "service-ips", "service-nodeports"
NO_ENDPOINT_SERVICES, NO_ENDPOINT_NODEPORTS = "no-endpoint-services", "no-endpoint-nodeports"
FIREWALL_IPS, CLUSTER_IPS, NODEPORT_IPS = "firewall-ips", "cluster-ips", "nodeport-ips"
MASQ_CHAIN = "mark-for-masquerade"
HAIRPIN_SET = "hairpin-connections"
# objects only kube-proxy's table has (any generation)
KUBE_PROXY_MARKERS = (SERVICE_IPS, "services", "nat-prerouting", MASQ_CHAIN)
# kube-proxy's fixed helper chains: unreferenced when a family has no services, which is normal
HELPER_CHAINS = frozenset({"nodeport-endpoints-check", "service-endpoints-check", "firewall-check",
                           "firewall-allow-check", "services", "masquerading", "cluster-ips-check",
                           MASQ_CHAIN, "reject-chain"})
# the chain kinds named ``<kind>-HASH-ns/svc/proto/port[__ip/port]``
SERVICE_CHAIN_KINDS = ("service", "local", "external", "firewall", "endpoint")
# statements a kube-proxy rule may end with, per chain kind (anything else: unknown layout)
_ACTIONS = {
    "service": {"goto", "jump", "vmap", "dnat", "mangle"},
    "local": {"goto", "jump", "vmap", "dnat", "mangle"},
    "external": {"goto", "jump", "mangle"},
    "endpoint": {"jump", "set", "dnat", "mangle"},
    "firewall": {"drop"},
}


# -- names ------------------------------------------------------------------------------------------
# service-, local-, external-, firewall-, endpoint- chains and affinity- sets are named
# <kind>-<hash>-ns/svc/proto/port[__ip/port] (":" of an IPv6 endpoint written as "."); the element
# comments of the no-endpoint maps are the ServicePortName "ns/svc:port".

CHAIN_PREFIXES = ("service", "local", "external", "firewall", "endpoint", "affinity")
CHAIN_RE = re.compile(r"^(service|local|external|firewall|endpoint|affinity)-([A-Z2-7]{8})-(.+)$")
COMMENT_RE = re.compile(r"^(?P<ns>[^/\s]+)/(?P<svc>[^:\s]+)(?::(?P<port>\S+))?$")


@dataclass(frozen=True)
class ChainName:
    """A kube-proxy service/endpoint chain or set name, split into its parts."""

    prefix: str
    hash: str
    name: ServicePortName
    endpoint: str | None  # "ip/port" part of endpoint- and affinity- names
    full: str

    @property
    def hash_ok(self) -> bool:
        """Whether the 8-char hash is kube-proxy's hash of the rest of the name."""
        base = self.full.split("-", 2)[2]
        return chain_hash(base) == self.hash


def chain_hash(base: str) -> str:
    """kube-proxy's hashAndTruncate prefix: base32(sha256(name))[:8]."""
    return base64.b32encode(hashlib.sha256(base.encode()).digest()).decode()[:8]


def parse_chain_name(name: str) -> ChainName | None:
    """Split ``service-HASH-ns/svc/proto/port[__ip/port]``; None when it is not such a name."""
    m = CHAIN_RE.match(name)
    if not m:
        return None
    prefix, hsh, rest = m.groups()
    svc_part, _, ep_part = rest.partition("__")
    parts = svc_part.split("/")
    if len(parts) != 4:
        return None
    ns, svc, proto, port = parts
    return ChainName(prefix, hsh, ServicePortName(ns, svc, port, proto.upper()), ep_part or None, name)


@dataclass(frozen=True)
class Generation:
    """A layout generation of kube-proxy's nftables table, with what shows it."""

    name: str  # "v1.29-v1.33" | "v1.34-v1.35" | "v1.36+"
    description: str
    evidence: tuple[str, ...] = field(default_factory=tuple)


GENERATIONS = {
    "v1.29-v1.33": "filter-prerouting/input/forward/output at -110, filter-output-post-dnat at -90; "
                   "endpoint chains; mark-for-masquerade chain",
    "v1.34-v1.35": "filter-prerouting-pre-dnat/filter-output-pre-dnat at -110, filter-input/forward/"
                   "output at 0 (also 1.33.x backports); endpoint chains; mark-for-masquerade chain",
    "v1.36+": "no mark-for-masquerade chain (inline marks), hairpin-connections set, service chains "
              "DNAT through numgen maps (endpoint chains only with ClientIP affinity)",
}


def generation(table: NftTable) -> Generation | None:
    """Which layout generation ``table`` (kube-proxy's) is in, with the objects that show it;
    None when it has none of the distinguishing base chains (an empty or foreign table)."""
    chains, sets = table.chains, table.sets
    if HAIRPIN_SET in sets or (MASQ_CHAIN not in chains and "filter-prerouting-pre-dnat" in chains
                               and "masquerading" in chains):
        evidence = [f"set {HAIRPIN_SET}"] if HAIRPIN_SET in sets else []
        evidence.append(f"no chain {MASQ_CHAIN}" if MASQ_CHAIN not in chains else f"chain {MASQ_CHAIN}")
        return Generation("v1.36+", GENERATIONS["v1.36+"], tuple(evidence))
    if "filter-prerouting-pre-dnat" in chains or "filter-output-pre-dnat" in chains:
        evidence = [_base_text(chains[n]) for n in ("filter-prerouting-pre-dnat", "filter-output-pre-dnat",
                                                    "filter-input") if n in chains]
        return Generation("v1.34-v1.35", GENERATIONS["v1.34-v1.35"], tuple(evidence))
    if "filter-prerouting" in chains or "filter-output-post-dnat" in chains:
        evidence = [_base_text(chains[n]) for n in ("filter-prerouting", "filter-output-post-dnat")
                    if n in chains]
        return Generation("v1.29-v1.33", GENERATIONS["v1.29-v1.33"], tuple(evidence))
    return None


def _base_text(chain: NftChain) -> str:
    return f"chain {chain.name} {{ {chain.header()} }}"


# -- rule shapes -----------------------------------------------------------------------------------


def verdict_chain(value: object) -> str | None:
    """The chain of a ``goto``/``jump`` verdict, else None."""
    if isinstance(value, dict):
        for kind in ("goto", "jump"):
            body = value.get(kind)
            if isinstance(body, dict):
                return body.get("target")
    return None


def is_masquerade_mark(stmt: dict) -> bool:
    """``jump mark-for-masquerade`` (up to v1.35) or ``meta mark set meta mark | BIT`` (v1.36+)."""
    if verdict_chain(stmt) == MASQ_CHAIN:
        return True
    mangle = stmt.get("mangle")
    if isinstance(mangle, dict) and (mangle.get("key") or {}).get("meta", {}).get("key") == "mark":
        value = mangle.get("value")
        return isinstance(value, dict) and "|" in value
    return False


def marks_masquerade(rule: NftRule) -> bool:
    """Whether the rule ends by marking the packet for masquerading."""
    return bool(rule.expr) and is_masquerade_mark(rule.expr[-1])


def numgen_vmap(rule: NftRule) -> tuple[int, list[tuple[int, str]]] | None:
    """``numgen random mod N vmap { i : goto chain }``: (N, [(i, chain)]), else None."""
    for stmt in rule.expr:
        vmap = stmt.get("vmap")
        if not isinstance(vmap, dict):
            continue
        key = vmap.get("key")
        if isinstance(key, dict) and "numgen" in key:
            data = vmap.get("data")
            entries = []
            items = data.get("set") if isinstance(data, dict) else None
            for item in items or []:
                if isinstance(item, list) and len(item) == 2 and isinstance(item[0], int):
                    target = verdict_chain(item[1])
                    if target:
                        entries.append((item[0], target))
            return int(key["numgen"].get("mod") or 0), entries
    return None


def dnat_statement(rule: NftRule) -> dict | None:
    """The rule's ``dnat`` statement body, if it has one."""
    for stmt in rule.expr:
        body = stmt.get("dnat")
        if isinstance(body, dict):
            return body
    return None


def dnat_endpoint(body: dict) -> Endpoint | None:
    """``dnat to ip:port`` (or ``dnat ip addr . port to ip . port``) as one endpoint, else None."""
    addr, port = body.get("addr"), body.get("port")
    if isinstance(addr, str) and isinstance(port, int):
        return Endpoint(addr, port)
    if port is None:
        return _concat_endpoint(addr)
    return None


def dnat_numgen_map(body: dict) -> tuple[int, list[tuple[int, Endpoint]]] | None:
    """``dnat ip to numgen random mod N map { i : ip . port }``: (N, [(i, endpoint)]), else None.

    Entries whose data is not ``ip . port`` are left out (the caller compares the count to N)."""
    addr = body.get("addr")
    mapping = addr.get("map") if isinstance(addr, dict) else None
    if not isinstance(mapping, dict) or body.get("port") is not None:
        return None
    key = mapping.get("key")
    if not (isinstance(key, dict) and "numgen" in key):
        return None
    data = mapping.get("data")
    entries = []
    for item in (data.get("set") if isinstance(data, dict) else None) or []:
        if isinstance(item, list) and len(item) == 2 and isinstance(item[0], int):
            ep = _concat_endpoint(item[1])
            if ep is not None:
                entries.append((item[0], ep))
    return int(key["numgen"].get("mod") or 0), entries


def _concat_endpoint(value: Any) -> Endpoint | None:
    parts = value.get("concat") if isinstance(value, dict) else None
    if isinstance(parts, list) and len(parts) == 2:
        ip, port = parts
        if isinstance(ip, str) and isinstance(port, int):
            return Endpoint(ip, port)
    return None


def unknown_rule(kind: str, rule: NftRule) -> str | None:
    """Why a rule of a kube-proxy ``kind`` chain (service, local, external, endpoint, firewall) is
    not a shape any generation writes; None when it is one. Looks at the rule's last statement
    only (matches before it are free), so it stays cheap on 100k-rule tables."""
    expr = rule.expr
    allowed = _ACTIONS.get(kind)
    if not expr or allowed is None:
        return None
    last = expr[-1]
    action = next(iter(last), None) if isinstance(last, dict) else None
    if action is None or action in _PLAIN_ACTIONS:
        return None if action is None or action in allowed else f"a {kind} chain rule ending in '{action}'"
    if action not in allowed:
        return f"a {kind} chain rule ending in '{action}'"
    body = last[action]
    if action == "dnat":
        addr = body.get("addr") if isinstance(body, dict) else None
        if isinstance(addr, str) or (isinstance(addr, dict) and (
                "concat" in addr or _has_numgen_key(addr.get("map")))):
            return None
        return f"a {kind} chain DNAT that is neither 'dnat to ip:port' nor a numgen map of ip . port"
    if action == "vmap":
        return None if _has_numgen_key(body) else \
            f"a {kind} chain vmap that is not 'numgen random mod N vmap'"
    if action == "mangle":
        return None if is_masquerade_mark(last) else \
            f"a {kind} chain statement that sets something other than the masquerade mark"
    if action == "set" and (body or {}).get("op") != "update":
        return f"a {kind} chain set statement other than the affinity update"
    return None


_PLAIN_ACTIONS = frozenset({"goto", "jump", "drop"})


def _has_numgen_key(body: object) -> bool:
    key = body.get("key") if isinstance(body, dict) else None
    return isinstance(key, dict) and "numgen" in key


# -- what the checks read of every rule (worked out while the listing is read: ChainFacts) ------


def rule_targets(obj: object) -> list[str]:
    """Every chain a rule's statements (or a nested expression / anonymous vmap) or a map
    element's value jump or go to, in the order they appear."""
    out: list[str] = []
    if type(obj) is list:
        for stmt in obj:
            if type(stmt) is dict and len(stmt) == 1:
                kind = next(iter(stmt))
                if kind in _NO_VERDICTS:
                    continue
                if kind == "jump" or kind == "goto":
                    body = stmt[kind]
                    if type(body) is dict and len(body) == 1 and type(body.get("target")) is str:
                        out.append(body["target"])  # {"jump": {"target": "chain"}}
                        continue
            _targets_into(stmt, out)
    else:
        _targets_into(obj, out)
    return out


# statements whose bodies hold values, never verdicts (libnftables-json(5): verdicts are
# statements of their own or the data of a vmap)
_NO_VERDICTS = frozenset({"match", "counter", "accept", "drop", "return", "continue", "masquerade",
                          "notrack", "log", "limit", "dnat", "snat", "redirect", "mangle", "reject",
                          "set", "queue", "quota"})


def _targets_into(obj: object, out: list[str]) -> None:
    if isinstance(obj, dict):
        for kind in ("jump", "goto"):
            body = obj.get(kind)
            if isinstance(body, dict) and isinstance(body.get("target"), str):
                out.append(body["target"])
        for value in obj.values():
            if isinstance(value, (dict, list)):
                _targets_into(value, out)
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, (dict, list)):
                _targets_into(item, out)


def numgen_problem(rule: NftRule) -> str | None:
    """``numgen random mod N vmap`` (or, v1.36+, ``dnat ip to numgen random mod N map``) whose
    entries are not exactly 0..N-1: what is wrong; None when it is not such a rule or is right."""
    expr = rule.expr
    if not any("vmap" in stmt or "dnat" in stmt for stmt in expr):
        return None
    for stmt in expr:
        vmap = stmt.get("vmap")
        key = vmap.get("key") if isinstance(vmap, dict) else None
        if isinstance(vmap, dict) and isinstance(key, dict) and "numgen" in key:
            mod = int(key["numgen"].get("mod") or 0)
            data = vmap.get("data")
            keys = [item[0] for item in (data.get("set") if isinstance(data, dict) else None) or []
                    if isinstance(item, list) and len(item) == 2]
            return numgen_text(mod, keys, "vmap")
    dnat = _dnat_of(expr)
    addr = dnat.get("addr") if dnat is not None else None
    mapping = addr.get("map") if isinstance(addr, dict) else None
    key = mapping.get("key") if isinstance(mapping, dict) else None
    if isinstance(key, dict) and "numgen" in key and dnat.get("port") is None:  # type: ignore[union-attr]
        # dnat ip to numgen random mod N map { ... } (as dnat_numgen_map reads it)
        data = mapping.get("data")  # type: ignore[union-attr]
        items = data.get("set") if isinstance(data, dict) else None
        keys = [item[0] for item in items or [] if isinstance(item, list) and len(item) == 2]
        return numgen_text(int(key["numgen"].get("mod") or 0), keys, "map")
    return None


def _dnat_of(expr: list[dict]) -> dict | None:
    for stmt in expr:
        body = stmt.get("dnat")
        if isinstance(body, dict):
            return body
    return None


def numgen_text(mod: int, keys: list, kind: str) -> str | None:
    """What is wrong with numgen entries ``keys`` for ``mod`` (None: exactly 0..mod-1)."""
    if sorted(keys) == list(range(mod)):
        return None
    valid = {k for k in keys if isinstance(k, int) and 0 <= k < mod}
    lost = mod - len(valid)
    text = f"numgen random mod {mod} but the {kind} has {len(keys)} entries ({', '.join(map(str, keys))})"
    if lost > 0:
        text += (f": {lost} in {mod} new connections match no entry and fall through without DNAT "
                 "(rejected as traffic to an unused ClusterIP port)")
    unreachable = [k for k in keys if k not in valid]
    if unreachable:
        text += f"; entries {', '.join(map(str, unreachable))} can never be picked (endpoints unused)"
    return text
