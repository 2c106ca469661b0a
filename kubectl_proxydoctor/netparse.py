"""IP and CIDR parsing with the semantics kube-proxy applies to API values.

kube-proxy reads addresses with k8s.io/utils/net ``ParseIPSloppy`` / ``ParseCIDRSloppy`` (Go 1.16's
parser): an IPv4 octet may carry leading zeros and is read as decimal (``010.0.0.1`` is 10.0.0.1),
and it writes rules with the canonical form. ``loadBalancerSourceRanges`` entries are trimmed of
whitespace first (``" 203.0.113.0/25"`` is honoured); entries that still do not parse are skipped.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# an IPv4 address already in canonical form (what rules and most API values hold): its own
# canonical form, recognised without parsing it octet by octet (nodes carry 100k+ endpoints)
is_canonical_v4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}").fullmatch


def ipv4_int(text: str) -> int | None:
    """The integer of a canonical dotted IPv4 address (``10.0.0.9``), None for anything else."""
    if is_canonical_v4(text) is None:
        return None
    a, b, c, d = text.split(".")
    return (int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d)


def _sloppy_v4(text: str) -> str | None:
    parts = text.split(".")
    if len(parts) != 4:
        return None
    octets = []
    for part in parts:
        if not part.isdigit() or len(part) > 3 or not part.isascii():
            return None
        value = int(part, 10)
        if value > 255:
            return None
        octets.append(str(value))
    return ".".join(octets)


@lru_cache(maxsize=65536)
def parse_ip_sloppy(text: str) -> str | None:
    """The canonical form of an IP as kube-proxy parses it, or None when it is not an IP."""
    if not isinstance(text, str) or not text:
        return None
    if ":" not in text:
        return _sloppy_v4(text)
    try:
        addr = ipaddress.IPv6Address(text)
    except ValueError:
        return None
    mapped = addr.ipv4_mapped
    return str(mapped) if mapped is not None else str(addr)


@lru_cache(maxsize=4096)
def parse_cidr_sloppy(text: str) -> str | None:
    """The canonical network (``203.0.113.0/25``) of a CIDR as kube-proxy parses it, or None."""
    if not isinstance(text, str):
        return None
    ip_text, slash, plen = text.partition("/")
    if not slash or not plen.isdigit() or not plen.isascii():
        return None
    ip = parse_ip_sloppy(ip_text)
    if ip is None:
        return None
    try:
        return str(ipaddress.ip_network(f"{ip}/{int(plen)}", strict=False))
    except ValueError:
        return None


def canonical_ip(text: object) -> str | None:
    """parse_ip_sloppy for any JSON value (None for non-strings)."""
    if not isinstance(text, str):
        return None
    return text if is_canonical_v4(text) is not None else parse_ip_sloppy(text)


def source_ranges(values: object) -> list[str]:
    """loadBalancerSourceRanges as kube-proxy uses them: trimmed, sloppily parsed, invalid skipped."""
    out = []
    for value in values if isinstance(values, list) else []:
        if not isinstance(value, str):
            continue
        cidr = parse_cidr_sloppy(value.strip())
        if cidr is not None:
            out.append(cidr)
    return out
