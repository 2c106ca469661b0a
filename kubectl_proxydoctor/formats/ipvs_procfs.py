"""Read /proc/net/ip_vs: hex IPv4 addresses and ports, bracketed IPv6, persistence in jiffies."""

from __future__ import annotations

import re

from kubectl_proxydoctor.errors import ParseError
from kubectl_proxydoctor.formats.ipvs_table import (
    IpvsTable,
    RealServer,
    VirtualServer,
    normalise_ip,
    table_lines,
)

_ADDR = r"([0-9A-Fa-f]{8}|\[[0-9A-Fa-f:.]+\]):([0-9A-Fa-f]{4})"
_SERVICE = re.compile(rf"^(TCP|UDP|SCTP)\s+{_ADDR}\s+(\S+)(.*)$")
_FWM = re.compile(r"^FWM\s+([0-9A-Fa-f]{8})\s+(\S+)(.*)$")
_REAL = re.compile(rf"^->\s+{_ADDR}\s+(\S+)\s+(-?\d+)\s+(\d+)\s+(\d+)$")


def hex_address(text: str) -> str:
    """``0A600001`` -> ``10.96.0.1`` (kernel prints ntohl(addr) as %08X); ``[fd00::1]`` as is."""
    if text.startswith("["):
        return normalise_ip(text)
    value = int(text, 16)
    return ".".join(str((value >> shift) & 0xFF) for shift in (24, 16, 8, 0))


def parse(text: str, source: str = "proc-net-ip_vs.txt", hz: int | None = None) -> IpvsTable:
    """Parse /proc/net/ip_vs. The kernel prints the persistence timeout in jiffies
    (``svc->timeout``); with ``hz`` (CONFIG_HZ) it becomes seconds, without it stays as printed."""
    table = IpvsTable(source)
    current: VirtualServer | None = None
    for number, line in table_lines(text):
        try:
            if m := _SERVICE.match(line):
                ip = hex_address(m.group(2))
                current = VirtualServer(m.group(1), ip, int(m.group(3), 16), m.group(4),
                                        family=6 if ":" in ip else 4, evidence=line)
                _flags(current, m.group(5), hz)
                table.services.append(current)
            elif m := _FWM.match(line):
                current = VirtualServer("FWM", None, 0, m.group(2), fwmark=int(m.group(1), 16),
                                        evidence=line)
                _flags(current, m.group(3), hz)
                table.services.append(current)
            elif m := _REAL.match(line):
                if current is None:
                    raise ParseError(source, "real server line before any virtual server", number)
                ip = hex_address(m.group(1))
                current.reals.append(RealServer(ip, int(m.group(2), 16), m.group(3), int(m.group(4)),
                                                int(m.group(5)), int(m.group(6)), evidence=line))
            else:
                raise ParseError(source, f"not a /proc/net/ip_vs line: {line[:80]!r}", number)
        except (ValueError, IndexError) as e:
            raise ParseError(source, f"bad value in {line[:80]!r}", number) from e
    return table


def _flags(vs: VirtualServer, rest: str, hz: int | None) -> None:
    words = rest.split()
    if "ops" in words:
        vs.flags.append("ops")
    if "persistent" in words:
        i = words.index("persistent")
        ticks = int(words[i + 1])
        vs.persistent = ticks // hz if hz else ticks
        if not hz:
            vs.flags.append("persistent-timeout-unscaled")
        if i + 2 < len(words):
            mask = int(words[i + 2], 16)
            vs.netmask = hex_address(words[i + 2]) if vs.family == 4 else str(mask)
