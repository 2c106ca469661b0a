"""Consistent redaction of a capture, so it can be shared with a vendor.

IP addresses are replaced prefix-preservingly (two addresses that share an N-bit prefix still do
after redaction, so CIDRs, pod ranges and service ranges keep matching), with the first octet of
IPv4 kept so private ranges stay recognisable; loopback, unspecified and netmask-like addresses
are kept. Object names from the API (namespaces, services, pods, nodes, slices) become
``ns-1``, ``svc-1``, ... everywhere they occur. Secrets are dropped from api.json.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import re
from dataclasses import dataclass, field

from kubectl_proxydoctor.snapshot import NodeSnapshot

KEEP_NAMESPACES = {"default", "kube-system", "kube-public", "kube-node-lease"}
# tokens that also mean something in rule syntax: never treat them as object names
RESERVED = {
    "tcp", "udp", "sctp", "ip", "ip6", "inet", "nat", "filter", "mangle", "raw", "http", "https",
    "dns", "local", "cluster", "kube-proxy", "kubernetes", "drop", "accept", "reject", "return",
    "input", "output", "forward", "prerouting", "postrouting", "lo", "any",
}

_IPV4 = re.compile(r"(?<![\w.:])(\d{1,3}(?:\.\d{1,3}){3})(?:/(\d{1,2}))?(?![\w]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])((?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4})(?![\w:])")
_HEX_ADDR = re.compile(r"\b([0-9A-F]{8}):([0-9A-F]{4})\b")


@dataclass
class Redactor:
    """One redaction key and the name table built from a capture's API objects."""

    key: bytes = field(default_factory=lambda: os.urandom(32))
    names: dict[str, str] = field(default_factory=dict)
    _cache: dict[str, str] = field(default_factory=dict)

    # -- addresses -------------------------------------------------------------------------------

    def _flip_bits(self, value: int, bits: int, keep: int) -> int:
        out = value >> (bits - keep)
        for i in range(keep, bits):
            prefix = value >> (bits - i)
            digest = hmac.new(self.key, f"{bits}:{i}:{prefix}".encode(), hashlib.sha256).digest()
            bit = (value >> (bits - 1 - i)) & 1
            out = (out << 1) | (bit ^ (digest[0] & 1))
        return out

    def ip(self, text: str) -> str:
        """The redacted form of one address (unchanged when it is special or not an address)."""
        cached = self._cache.get(text)
        if cached is not None:
            return cached
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            return text
        if addr.is_loopback or addr.is_unspecified or addr.is_multicast or _is_mask(addr):
            result = text
        elif addr.version == 4:
            result = str(ipaddress.IPv4Address(self._flip_bits(int(addr), 32, 8)))
        else:
            keep = 10 if addr.is_link_local else 16
            result = str(ipaddress.IPv6Address(self._flip_bits(int(addr), 128, keep)))
        self._cache[text] = result
        return result

    def _ipv4_or_cidr(self, m: re.Match[str]) -> str:
        mapped = self.ip(m.group(1))
        if m.group(2) is None:
            return mapped
        if mapped == m.group(1) or int(m.group(2)) > 32:
            return m.group(0)
        network = ipaddress.ip_network(f"{mapped}/{m.group(2)}", strict=False)
        return f"{network.network_address}/{m.group(2)}"

    def _hex(self, m: re.Match[str]) -> str:
        addr = ipaddress.IPv4Address(int(m.group(1), 16))
        return f"{int(ipaddress.IPv4Address(self.ip(str(addr)))):08X}:{m.group(2)}"

    # -- names -----------------------------------------------------------------------------------

    def learn_names(self, api_text: str) -> None:
        """Collect the object names in an api.json List and give each a neutral replacement."""
        try:
            doc = json.loads(api_text)
        except json.JSONDecodeError:
            return
        found: dict[str, set[str]] = {"ns": set(), "svc": set(), "pod": set(), "node": set(), "slice": set()}
        for item in doc.get("items", []) if isinstance(doc, dict) else []:
            if not isinstance(item, dict):
                continue
            meta = item.get("metadata") or {}
            kind = item.get("kind")
            if meta.get("namespace"):
                found["ns"].add(meta["namespace"])
            if kind == "Service":
                found["svc"].add(meta.get("name", ""))
            elif kind == "Node":
                found["node"].add(meta.get("name", ""))
            elif kind == "EndpointSlice":
                found["slice"].add(meta.get("name", ""))
                for ep in item.get("endpoints") or []:
                    ref = ep.get("targetRef") or {}
                    if ref.get("name"):
                        found["pod"].add(ref["name"])
                    for key in ("nodeName", "hostname"):
                        if ep.get(key):
                            found["node" if key == "nodeName" else "pod"].add(ep[key])
        for prefix in ("ns", "node", "svc", "slice", "pod"):
            for name in sorted(found[prefix]):
                if not name or name in self.names or name in RESERVED:
                    continue
                if prefix == "ns" and name in KEEP_NAMESPACES:
                    continue
                count = sum(v.startswith(prefix + "-") for v in self.names.values())
                self.names[name] = f"{prefix}-{count + 1}"

    def text(self, text: str, filename: str = "") -> str:
        """Redact addresses and learned names in one file's text."""
        text = _IPV4.sub(self._ipv4_or_cidr, text)
        text = _IPV6.sub(lambda m: self.ip(m.group(1)) if ":" in m.group(1) else m.group(1), text)
        if filename == "proc-net-ip_vs.txt":
            text = _HEX_ADDR.sub(self._hex, text)
        if self.names:
            alternation = "|".join(re.escape(n) for n in sorted(self.names, key=len, reverse=True))
            pattern = re.compile(rf"(?<![\w.-])({alternation})(?![\w-])")
            text = pattern.sub(lambda m: self.names[m.group(1)], text)
        return text


def _is_mask(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    bits = addr.max_prefixlen
    value = int(addr)
    inverted = ~value & ((1 << bits) - 1)
    return value != 0 and (inverted & (inverted + 1)) == 0  # ones followed by zeros


def drop_secrets(api_text: str) -> str:
    """api.json without Secret objects and without last-applied-configuration copies."""
    try:
        doc = json.loads(api_text)
    except json.JSONDecodeError:
        return api_text
    if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
        return api_text
    items = []
    for item in doc["items"]:
        if isinstance(item, dict) and item.get("kind") == "Secret":
            continue
        annotations = (item.get("metadata") or {}).get("annotations") if isinstance(item, dict) else None
        if isinstance(annotations, dict):
            annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
        items.append(item)
    doc["items"] = items
    return json.dumps(doc, indent=1)


def redact_snapshot(snapshot: NodeSnapshot, key: bytes | None = None) -> NodeSnapshot:
    """A copy of the snapshot with addresses and names replaced consistently in every file."""
    redactor = Redactor(key=key) if key is not None else Redactor()
    files = dict(snapshot.files)
    if "api.json" in files:
        files["api.json"] = drop_secrets(files["api.json"])
        redactor.learn_names(files["api.json"])
    for name in list(redactor.names):
        if snapshot.node and name == snapshot.node:
            break
    else:
        if snapshot.node and snapshot.node not in redactor.names:
            redactor.names[snapshot.node] = "node-1" if "node-1" not in redactor.names.values() else "node-x"
    out = {name: redactor.text(text, name) for name, text in files.items()}
    meta = json.loads(redactor.text(json.dumps(snapshot.meta)))
    meta["redacted"] = True
    return NodeSnapshot(files=out, sources=dict(snapshot.sources), meta=meta, origin=snapshot.origin)
