"""The IPVS table as read from any source: virtual servers and their real servers."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

from kubectl_proxydoctor.errors import ParseError

# kernel IP_VS_SVC_F_* service flags
SVC_F_PERSISTENT = 0x0001
SVC_F_HASHED = 0x0002
SVC_F_ONEPACKET = 0x0004

# kernel IP_VS_CONN_F_FWD_MASK values -> the names ipvsadm and /proc print
FORWARD_NAMES = {0: "Masq", 1: "Local", 2: "Tunnel", 3: "Route", 4: "Bypass"}
IPPROTO_NAMES = {6: "TCP", 17: "UDP", 132: "SCTP"}


@dataclass
class RealServer:
    """One IPVS destination of a virtual server."""

    ip: str
    port: int
    forward: str = "Masq"
    weight: int = 1
    active: int = 0
    inactive: int = 0
    evidence: str = ""

    @property
    def address(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


@dataclass
class VirtualServer:
    """One IPVS service: protocol + address + port (or a firewall mark), scheduler, persistence."""

    protocol: str  # "TCP" | "UDP" | "SCTP" | "FWM"
    ip: str | None
    port: int
    scheduler: str
    fwmark: int | None = None
    persistent: int | None = None  # persistence timeout in seconds, None when not persistent
    netmask: str | None = None
    flags: list[str] = field(default_factory=list)
    reals: list[RealServer] = field(default_factory=list)
    family: int = 4
    evidence: str = ""

    @property
    def address(self) -> str:
        if self.fwmark is not None:
            return f"FWM {self.fwmark}"
        ip = self.ip or ""
        return f"[{ip}]:{self.port}" if ":" in ip else f"{ip}:{self.port}"

    @property
    def key(self) -> tuple[str, str | None, int]:
        return (self.protocol, self.ip, self.port)

    def lines(self) -> list[str]:
        """The evidence lines: the service line, then one per real server."""
        return [self.evidence, *(r.evidence for r in self.reals)]


@dataclass
class IpvsTable:
    """Every virtual server read from one source."""

    source: str  # the capture file (or "netlink") it was read from
    services: list[VirtualServer] = field(default_factory=list)

    def find(self, protocol: str, ip: str, port: int) -> VirtualServer | None:
        ip = normalise_ip(ip)
        for vs in self.services:
            if vs.protocol == protocol.upper() and vs.ip == ip and vs.port == port:
                return vs
        return None


# the header lines both ipvsadm -Ln and /proc/net/ip_vs print before the services
HEADER_PREFIXES = ("IP Virtual Server version", "Prot LocalAddress:Port", "-> RemoteAddress:Port")


def table_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, stripped line) of an IPVS table listing, blank and header lines left out."""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith(HEADER_PREFIXES):
            yield number, line


@lru_cache(maxsize=65536)
def normalise_ip(text: str) -> str:
    """Canonical text of an address (IPv6 compressed); ValueError when it is not one.

    Cached: a table names each virtual server address and endpoint many times."""
    return str(ipaddress.ip_address(text.strip("[]")))


def split_addr_port(text: str, source: str, line: int) -> tuple[str, int]:
    """``10.0.0.1:80`` or ``[fd00::1]:80`` -> (canonical ip, port)."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if not sep:
        raise ParseError(source, f"expected ADDRESS:PORT, got {text!r}", line)
    try:
        return normalise_ip(host), _port(port)
    except ValueError as e:
        raise ParseError(source, f"bad address {text!r} (numeric output -n expected)", line) from e


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(text)
    return value
