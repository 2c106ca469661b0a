"""Read `ipset save` output and answer `-m set --match-set NAME dir[,dir...]` for a packet."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from kubectl_proxydoctor.errors import ParseError

# every ipset kube-proxy's IPVS mode keeps (pkg/proxy/ipvs/ipset.go)
KUBE_IPSETS = (
    "KUBE-LOOP-BACK", "KUBE-CLUSTER-IP", "KUBE-EXTERNAL-IP", "KUBE-EXTERNAL-IP-LOCAL",
    "KUBE-LOAD-BALANCER", "KUBE-LOAD-BALANCER-LOCAL", "KUBE-LOAD-BALANCER-FW",
    "KUBE-LOAD-BALANCER-SOURCE-IP", "KUBE-LOAD-BALANCER-SOURCE-CIDR",
    "KUBE-NODE-PORT-TCP", "KUBE-NODE-PORT-LOCAL-TCP", "KUBE-NODE-PORT-UDP", "KUBE-NODE-PORT-LOCAL-UDP",
    "KUBE-NODE-PORT-SCTP-HASH", "KUBE-NODE-PORT-LOCAL-SCTP-HASH", "KUBE-HEALTH-CHECK-NODE-PORT",
    "KUBE-IPVS-IPS",
)


def set_name(base: str, family: int) -> str:
    """kube-proxy's name of a set for an IP family: IPv6 sets are ``KUBE-6-...`` (at most 31 chars)."""
    if family == 6 and base.startswith("KUBE-"):
        return base.replace("KUBE-", "KUBE-6-", 1)[:31]
    return base


@dataclass(frozen=True)
class Member:
    """One ipset entry split into its dimensions (``ip``, ``port`` with protocol, ``net``)."""

    raw: str
    parts: tuple[tuple[str, str], ...]  # ("ip", "10.0.0.1"), ("port", "tcp:80"), ("net", "10.0.0.0/8")
    line: int = 0


@dataclass
class IpSet:
    name: str
    type: str  # e.g. "hash:ip,port"
    options: list[str] = field(default_factory=list)
    members: list[Member] = field(default_factory=list)
    _exact: dict[tuple, Member] = field(default_factory=dict, repr=False, compare=False)
    _ranged: list[Member] = field(default_factory=list, repr=False, compare=False)
    _indexed: int = field(default=-1, repr=False, compare=False)

    def _index(self) -> dict[tuple, Member]:
        """Exact members by normalised key; members with a CIDR are matched by a scan."""
        if self._indexed != len(self.members):
            self._exact, self._ranged, self._indexed = {}, [], len(self.members)
            for member in self.members:
                key = _exact_key(member.parts)
                if key is None:
                    self._ranged.append(member)
                else:
                    self._exact.setdefault(key, member)
        return self._exact

    @property
    def dimensions(self) -> list[str]:
        return self.type.split(":", 1)[1].split(",") if ":" in self.type else []

    @property
    def family(self) -> int:
        return 6 if "inet6" in self.options else 4

    def contains(self, values: list[str]) -> Member | None:
        """The member matching these values (one per dimension: an ip, "tcp:80", or an ip for net)."""
        exact = self._index()
        key = _value_key(self.dimensions, values, bare_ports=self.type == "bitmap:port")
        if key is not None and key in exact:
            return exact[key]
        for member in self._ranged:
            if _member_matches(member, values):
                return member
        return None


def _exact_key(parts: tuple[tuple[str, str], ...]) -> tuple | None:
    key: list = []
    for kind, value in parts:
        if kind == "net" or "/" in value:
            return None
        if kind == "port":
            key.append(_port_key(value) if ":" in value else ("*", int(value)))
        else:
            key.append(value)
    return tuple(key)


def _value_key(dims: list[str], values: list[str], bare_ports: bool = False) -> tuple | None:
    key: list = []
    try:
        for dim, value in zip(dims, values, strict=False):
            if dim == "port":
                key.append(("*", _port_key(value)[1]) if bare_ports else _port_key(value))
            elif dim == "ip":
                key.append(str(ipaddress.ip_address(value)))
            else:
                return None
    except ValueError:
        return None
    return tuple(key) if len(values) >= len(dims) else None


def _member_matches(member: Member, values: list[str]) -> bool:
    if len(values) < len(member.parts):
        return False
    for (kind, want), value in zip(member.parts, values, strict=False):
        try:
            if kind == "ip" and "/" in want:
                if ipaddress.ip_address(value) not in ipaddress.ip_network(want, strict=False):
                    return False
            elif kind == "ip":
                if ipaddress.ip_address(value) != ipaddress.ip_address(want):
                    return False
            elif kind == "net":
                if ipaddress.ip_address(value) not in ipaddress.ip_network(want, strict=False):
                    return False
            elif kind == "port" and ":" not in want:
                if int(want) != _port_key(value)[1]:
                    return False
            elif kind == "port" and _port_key(want) != _port_key(value):
                return False
        except ValueError:
            return False
    return True


def _port_key(text: str) -> tuple[str, int]:
    proto, sep, port = text.rpartition(":")
    return (proto.lower() if sep else "tcp", int(port))


def parse(text: str, source: str = "ipset-save.txt") -> dict[str, IpSet]:
    """Every set in `ipset save` output, by name."""
    sets: dict[str, IpSet] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = line.split()
        if words[0] == "create" and len(words) >= 3:
            sets[words[1]] = IpSet(words[1], words[2], words[3:])
        elif words[0] == "add" and len(words) >= 3:
            ipset = sets.get(words[1])
            if ipset is None:
                raise ParseError(source, f"entry for set {words[1]!r} before its create line", number)
            ipset.members.append(_member(ipset, words[2], source, number))
        else:
            raise ParseError(source, f"not an `ipset save` line: {line[:80]!r}", number)
    return sets


def _member(ipset: IpSet, entry: str, source: str, number: int) -> Member:
    dims = ipset.dimensions
    pieces = entry.split(",")
    if len(pieces) != len(dims):
        raise ParseError(source, f"entry {entry!r} does not fit set type {ipset.type}", number)
    parts: list[tuple[str, str]] = []
    for dim, piece in zip(dims, pieces, strict=True):
        try:
            if dim == "port" and ipset.type == "bitmap:port":
                parts.append(("port", str(int(piece))))  # the protocol is in the set's name
            elif dim == "port":
                proto, port = _port_key(piece)
                parts.append(("port", f"{proto}:{port}"))
            elif dim == "ip" and ipset.type.startswith("bitmap:"):
                parts.append(("ip", piece))
            elif dim in ("ip", "net"):
                if "/" in piece:
                    parts.append((dim, str(ipaddress.ip_network(piece, strict=False))))
                elif "-" in piece:
                    raise ValueError(piece)
                else:
                    parts.append((dim, str(ipaddress.ip_address(piece))))
            else:
                parts.append((dim, piece))
        except ValueError as e:
            raise ParseError(source, f"bad {dim} {piece!r} in entry {entry!r}", number) from e
    return Member(entry, tuple(parts), number)


def member_key(member: Member) -> tuple[str, str, int] | None:
    """(ip, PROTOCOL, port) of an ip,port entry; None for other shapes."""
    values = dict(member.parts[:2]) if len(member.parts) >= 2 else {}
    if "ip" in values and "port" in values:
        proto, port = _port_key(values["port"])
        return values["ip"], proto.upper(), port
    return None


def port_members(ipset: IpSet, protocol: str) -> set[int]:
    """Ports in a bitmap:port set (protocol from the set name), or the ports of hash:ip,port entries."""
    ports: set[int] = set()
    for member in ipset.members:
        for kind, value in member.parts:
            if kind == "port":
                proto, port = _port_key(value) if ":" in value else (protocol.lower(), int(value))
                if proto == protocol.lower():
                    ports.add(port)
    return ports
