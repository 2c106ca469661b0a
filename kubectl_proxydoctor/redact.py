"""Consistent redaction of a capture, so it can be shared with a vendor.

IP addresses are replaced prefix-preservingly (two addresses that share an N-bit prefix still do
after redaction, so CIDRs, pod ranges and service ranges keep matching), with the first octet of
IPv4 kept so private ranges stay recognisable; loopback, unspecified and netmask-like addresses
are kept. Object names from the API (namespaces, services, pods, nodes, slices) become
``ns-1``, ``svc-1``, ... everywhere they occur. Secrets are dropped from api.json.

kube-proxy's hashed chain names are recomputed from the redacted names (iptables ``KUBE-SVC-`` ...
``KUBE-SEP-``, nftables ``service-HASH-ns/svc/proto/port[__ip/port]``), so the redacted capture
is as self-consistent as the original and the hashes cannot be matched against guessed names; a
hash whose origin is unknown is replaced by a keyed one.
"""

from __future__ import annotations

import base64
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
    "local", "cluster", "kube-proxy", "kubernetes", "drop", "accept", "reject", "return",
    "input", "output", "forward", "prerouting", "postrouting", "lo", "any",
}

# "_" may precede an address: nft endpoint chains are named ...__10.244.0.12/8080
_IPV4 = re.compile(r"(?<![0-9A-Za-z.:])(\d{1,3}(?:\.\d{1,3}){3})(?:/(\d{1,2}))?(?![\w]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])((?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4})(?![\w:])")
_HEX_ADDR = re.compile(r"\b([0-9A-F]{8}):([0-9A-F]{4})\b")
_NFT_CHAIN = re.compile(r"\b(service|local|external|firewall|endpoint|affinity)-([A-Z2-7]{8})-"
                        r"([^\s\"',;{}/]+/[^\s\"',;{}/]+/[a-z]+/[^\s\"',;{}]+)")
_IPT_CHAIN = re.compile(r"\bKUBE-(SVC|SVL|EXT|FW|SEP)-([A-Z2-7]{16})\b")
_IPT_COMMENT = re.compile(r'--comment "?([^"\s/]+/[^"\s:]+)(?::([^"\s]+))?')
_IPT_SEP_RULE = re.compile(r"^-A (KUBE-SEP-[A-Z2-7]{16}) .*--to-destination (\S+)", re.M)
_PROTO = re.compile(r"(?:^| )-p (tcp|udp|sctp)\b")
# ns/name in a kube-proxy comment ("default/web:http ...") or nft chain name (default/web/tcp/http)
_RULE_NAME = re.compile(r"(?:--comment \"?|comment \"|-[A-Z2-7]{8}-)"
                        r"([a-z0-9][a-z0-9-]*)/([a-z0-9][a-z0-9-]*)[:/\" ]")
_PLACEHOLDER = re.compile("\x00(\\d+)\x00")


@dataclass
class Redactor:
    """One redaction key and the name table built from a capture's API objects."""

    key: bytes = field(default_factory=lambda: os.urandom(32))
    names: dict[str, str] = field(default_factory=dict)
    _cache: dict[str, str] = field(default_factory=dict)
    ipt_chains: dict[str, str] = field(default_factory=dict)  # original hash -> redacted hash

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
        self._assign(found)

    def learn_names_from_rules(self, texts: list[str]) -> None:
        """Service and namespace names as kube-proxy writes them into rules (comments
        ``ns/name:port``, nft chain names ``...-ns/name/proto/port``): a capture without api.json
        still gets its names redacted."""
        found: dict[str, set[str]] = {"ns": set(), "svc": set()}
        for text in texts:
            for m in _RULE_NAME.finditer(text):
                found["ns"].add(m.group(1))
                found["svc"].add(m.group(2))
        self._assign(found)

    def _assign(self, found: dict[str, set[str]]) -> None:
        for prefix in ("ns", "node", "svc", "slice", "pod"):
            for name in sorted(found.get(prefix, ())):
                if not name or name in self.names or name in RESERVED:
                    continue
                if prefix == "ns" and name in KEEP_NAMESPACES:
                    continue
                count = sum(v.startswith(prefix + "-") for v in self.names.values())
                self.names[name] = f"{prefix}-{count + 1}"

    def _name(self, name: str) -> str:
        return self.names.get(name, name)

    def _port_name(self, port_name: str) -> str:
        """``ns/name[:port]`` redacted as the text pass redacts it (a port name equal to a learned
        object name is replaced too)."""
        ns, _, rest = port_name.partition("/")
        name, colon, port = rest.partition(":")
        return f"{self._name(ns)}/{self._name(name)}{colon}{self._name(port) if port else ''}"

    def _keyed_hash(self, value: str, length: int) -> str:
        digest = hmac.new(self.key, value.encode(), hashlib.sha256).digest()
        return base64.b32encode(digest).decode()[:length]

    def _nft_chain(self, m: re.Match[str]) -> str:
        from kubectl_proxydoctor.modes.nftables.interpreter import chain_hash

        prefix, old_hash, rest = m.groups()
        svc_part, sep, endpoint = rest.partition("__")
        ns, svc, proto, port = svc_part.split("/", 3)
        new = f"{self._name(ns)}/{self._name(svc)}/{proto}/{self._name(port)}"
        if sep:
            host, slash, ep_port = endpoint.rpartition("/")
            bracketed = host.startswith("[")
            mapped = self.ip(host.strip("[]")) if slash else self.ip(endpoint)
            host = f"[{mapped}]" if bracketed else mapped
            new += f"__{host}{slash}{ep_port}" if slash else f"__{mapped}"
        valid = chain_hash(rest) == old_hash
        return f"{prefix}-{chain_hash(new) if valid else self._keyed_hash(old_hash, 8)}-{new}"

    def _ipt_chain(self, m: re.Match[str]) -> str:
        new = self.ipt_chains.get(m.group(2)) or self._keyed_hash(m.group(2), 16)
        return f"KUBE-{m.group(1)}-{new}"

    def learn_iptables_chains(self, api_text: str | None, dumps: list[str]) -> None:
        """Map kube-proxy's iptables chain hashes to the hashes of the redacted names.

        Service ports come from the API and from the dumps' ``ns/name:port`` comments; endpoint
        chains from the API's EndpointSlices and from each KUBE-SEP chain's own DNAT and comment."""
        from kubectl_proxydoctor.modes.iptables.hashes import endpoint_chain, port_proto_hash

        ports: set[tuple[str, str]] = set()  # (port name string, protocol)
        endpoints: set[tuple[str, str, str, int]] = set()  # (+ endpoint ip, port)
        for item in _api_items(api_text):
            meta = item.get("metadata") or {}
            ns = meta.get("namespace", "")
            if item.get("kind") == "Service":
                for p in (item.get("spec") or {}).get("ports") or []:
                    if isinstance(p, dict):
                        pn = f"{ns}/{meta.get('name', '')}" + (f":{p['name']}" if p.get("name") else "")
                        ports.add((pn, str(p.get("protocol") or "TCP").lower()))
            elif item.get("kind") == "EndpointSlice":
                svc = (meta.get("labels") or {}).get("kubernetes.io/service-name")
                for p in item.get("ports") or []:
                    if not (svc and isinstance(p, dict) and isinstance(p.get("port"), int)):
                        continue
                    pn = f"{ns}/{svc}" + (f":{p['name']}" if p.get("name") else "")
                    proto = str(p.get("protocol") or "TCP").lower()
                    for ep in item.get("endpoints") or []:
                        for addr in (ep.get("addresses") or []) if isinstance(ep, dict) else []:
                            endpoints.add((pn, proto, str(addr), p["port"]))
        for dump in dumps:
            for cm in _IPT_COMMENT.finditer(dump):
                pn = cm.group(1) + (f":{cm.group(2)}" if cm.group(2) else "")
                ports.update((pn, proto) for proto in ("tcp", "udp", "sctp"))
            for line in dump.splitlines():
                sep = _IPT_SEP_RULE.match(line)
                comment = _IPT_COMMENT.search(line)
                rule_proto = _PROTO.search(line)
                if not (sep and comment and rule_proto):
                    continue
                host, _, port = sep.group(2).rpartition(":")
                if port.isdigit():
                    pn = comment.group(1) + (f":{comment.group(2)}" if comment.group(2) else "")
                    endpoints.add((pn, rule_proto.group(1), host.strip("[]"), int(port)))
        for pn, proto in ports:
            self.ipt_chains[port_proto_hash(pn, proto)] = port_proto_hash(self._port_name(pn), proto)
        for pn, proto, host, port in endpoints:
            old = endpoint_chain(pn, proto, host, port)[len("KUBE-SEP-"):]
            self.ipt_chains[old] = endpoint_chain(self._port_name(pn), proto, self.ip(host), port)[9:]

    def text(self, text: str, filename: str = "") -> str:
        """Redact addresses, learned names and the hashes derived from them in one file's text."""
        held: list[str] = []

        def hold(m: re.Match[str]) -> str:  # an nft chain name, redacted whole, kept out of later passes
            held.append(self._nft_chain(m))
            return f"\x00{len(held) - 1}\x00"

        text = _NFT_CHAIN.sub(hold, text.replace("\x00", ""))
        text = _IPT_CHAIN.sub(self._ipt_chain, text)
        text = _IPV4.sub(self._ipv4_or_cidr, text)
        text = _IPV6.sub(lambda m: self.ip(m.group(1)) if ":" in m.group(1) else m.group(1), text)
        if filename == "proc-net-ip_vs.txt":
            text = _HEX_ADDR.sub(self._hex, text)
        if self.names:
            alternation = "|".join(re.escape(n) for n in sorted(self.names, key=len, reverse=True))
            pattern = re.compile(rf"(?<![\w.-])({alternation})(?![\w-])")
            text = pattern.sub(lambda m: self.names[m.group(1)], text)
        return _PLACEHOLDER.sub(lambda m: held[int(m.group(1))], text) if held else text


def _api_items(api_text: str | None) -> list[dict]:
    try:
        doc = json.loads(api_text) if api_text else None
    except json.JSONDecodeError:
        return []
    items = doc.get("items") if isinstance(doc, dict) else None
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


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
    redactor.learn_names_from_rules([t for n, t in files.items() if n.endswith(("-save.txt", "ruleset.json",
                                                                                "ruleset.txt"))])
    if snapshot.node:
        redactor._assign({"node": {snapshot.node}})
    redactor.learn_iptables_chains(files.get("api.json"),
                                   [t for n, t in files.items() if "tables" in n and n.endswith("-save.txt")])
    out = {name: redactor.text(text, name) for name, text in files.items()}
    meta = json.loads(redactor.text(json.dumps(snapshot.meta)))
    meta["redacted"] = True
    return NodeSnapshot(files=out, sources=dict(snapshot.sources), states=dict(snapshot.states), meta=meta,
                        origin=snapshot.origin)
