"""The service CIDRs kube-proxy's nftables rules drop unallocated ClusterIPs in.

kube-proxy (nftables mode) joins every ServiceCIDR's ``spec.cidrs`` (networking.k8s.io, its
ServiceCIDR informer: ``OnServiceCIDRsChanged``), keeps those of the table's family, and writes
``ip daddr { <cidrs> } drop comment "Drop traffic to unallocated ClusterIPs"`` in chain
``cluster-ips-check`` (after the reject of allocated ClusterIPs' unused ports). Without known
CIDRs it writes no drop rule. The iptables and IPVS proxiers ignore ServiceCIDRs.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from kubectl_proxydoctor.formats.nft_model import NftTable

CHAIN = "cluster-ips-check"


@dataclass
class DroppedCidrs:
    """The CIDRs one kube-proxy table drops, and the rules that say so."""

    family: str
    cidrs: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)


def dropped_cidrs(table: NftTable) -> DroppedCidrs | None:
    """The destination CIDRs ``cluster-ips-check`` drops (None: no such chain in the table)."""
    chain = table.chains.get(CHAIN)
    if chain is None:
        return None
    out = DroppedCidrs(table.family)
    for rule in chain.rules:
        if not any(isinstance(s, dict) and "drop" in s for s in rule.expr):
            continue
        for stmt in rule.expr:
            match = stmt.get("match") if isinstance(stmt, dict) else None
            left = match.get("left") if isinstance(match, dict) else None
            payload = left.get("payload") if isinstance(left, dict) else None
            if isinstance(payload, dict) and payload.get("field") == "daddr":
                out.cidrs += [c for c in _networks(match.get("right")) if c not in out.cidrs]  # type: ignore[union-attr]
        out.rules.append(rule.text)
    return out


def _networks(right: Any) -> list[str]:
    """CIDRs of a match's right side: an address, a prefix, or a set of them (normalised)."""
    if isinstance(right, str):
        return [normalise(right)] if not right.startswith("@") else []
    if isinstance(right, dict):
        if "prefix" in right:
            p = right["prefix"]
            return [normalise(f"{p.get('addr')}/{p.get('len')}")]
        if "set" in right:
            return [c for item in right["set"] for c in _networks(item)]
        if "range" in right:
            low, high = right["range"]
            return [str(n) for n in ipaddress.summarize_address_range(ipaddress.ip_address(low),
                                                                      ipaddress.ip_address(high))]
    if isinstance(right, list):
        return [c for item in right for c in _networks(item)]
    return []


def normalise(cidr: str) -> str:
    """``10.96.0.1/12`` -> ``10.96.0.0/12``; an address alone is a /32 or /128; else as written."""
    try:
        return str(ipaddress.ip_network(cidr.strip(), strict=False))
    except ValueError:
        return cidr.strip()


def family_of(cidr: str) -> str | None:
    try:
        return "ip" if ipaddress.ip_network(cidr, strict=False).version == 4 else "ip6"
    except ValueError:
        return None
