"""Read `ipvsadm -Ln --exact` and `ipvsadm-save -n` text; render a table back as `ipvsadm -Ln`."""

from __future__ import annotations

import re

from kubectl_proxydoctor.errors import ParseError
from kubectl_proxydoctor.formats.ipvs_table import (
    IpvsTable,
    RealServer,
    VirtualServer,
    split_addr_port,
    table_lines,
)

_SERVICE = re.compile(r"^(TCP|UDP|SCTP)\s+(\S+)\s+(\S+)(.*)$")
_FWM = re.compile(r"^FWM\s+(\d+)(\s+IPv6)?\s+(\S+)(.*)$")
_REAL = re.compile(r"^->\s+(\S+)\s+(\S+)\s+(-?\d+)\s+(\d+)\s+(\d+)$")

# ipvsadm-save forwarding switches -> the names `ipvsadm -Ln` prints
_SAVE_FORWARD = {"-m": "Masq", "--masquerading": "Masq", "-g": "Route", "--gatewaying": "Route",
                 "-i": "Tunnel", "--ipip": "Tunnel"}
_SAVE_PROTO = {"-t": "TCP", "--tcp-service": "TCP", "-u": "UDP", "--udp-service": "UDP",
               "--sctp-service": "SCTP"}


def parse(text: str, source: str = "ipvsadm.txt") -> IpvsTable:
    """Either format, decided by the first meaningful line."""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped:
            if stripped.startswith(("-A", "-a")):
                return parse_save(text, source)
            break
    return parse_list(text, source)


def _service_flags(vs: VirtualServer, rest: str, source: str, number: int) -> None:
    words = rest.split()
    i = 0
    try:
        while i < len(words):
            word = words[i]
            if word == "persistent":
                vs.persistent = int(words[i + 1])
                i += 2
            elif word in ("mask", "pe"):
                if word == "mask":
                    vs.netmask = words[i + 1]
                else:
                    vs.flags.append(f"pe {words[i + 1]}")
                i += 2
            else:
                vs.flags.append(word)
                i += 1
    except (IndexError, ValueError) as e:
        raise ParseError(source, f"bad service flags {rest.strip()!r}", number) from e


def parse_list(text: str, source: str = "ipvsadm.txt") -> IpvsTable:
    """Parse `ipvsadm -Ln [--exact]` output."""
    table = IpvsTable(source)
    current: VirtualServer | None = None
    for number, line in table_lines(text):
        if m := _SERVICE.match(line):
            ip, port = split_addr_port(m.group(2), source, number)
            current = VirtualServer(m.group(1), ip, port, m.group(3), family=6 if ":" in ip else 4,
                                    evidence=line)
            _service_flags(current, m.group(4), source, number)
            table.services.append(current)
        elif m := _FWM.match(line):
            current = VirtualServer("FWM", None, 0, m.group(3), fwmark=int(m.group(1)),
                                    family=6 if m.group(2) else 4, evidence=line)
            _service_flags(current, m.group(4), source, number)
            table.services.append(current)
        elif m := _REAL.match(line):
            if current is None:
                raise ParseError(source, "real server line before any virtual server", number)
            ip, port = split_addr_port(m.group(1), source, number)
            current.reals.append(RealServer(ip, port, m.group(2), int(m.group(3)), int(m.group(4)),
                                            int(m.group(5)), evidence=line))
        else:
            raise ParseError(source, f"not an `ipvsadm -Ln` line: {line[:80]!r}", number)
    return table


def _save_service(words: list[str], source: str, number: int) -> tuple[str, str | None, int, int | None, int]:
    """(protocol, ip, port, fwmark, index after the service spec) of an ipvsadm-save line."""
    flag = words[1] if len(words) > 1 else ""
    if flag in _SAVE_PROTO and len(words) > 2:
        ip, port = split_addr_port(words[2], source, number)
        return _SAVE_PROTO[flag], ip, port, None, 3
    if flag in ("-f", "--fwmark-service") and len(words) > 2:
        try:
            return "FWM", None, 0, int(words[2]), 3
        except ValueError as e:
            raise ParseError(source, f"bad firewall mark {words[2]!r}", number) from e
    raise ParseError(source, "expected -t/-u/--sctp-service ADDR:PORT or -f MARK", number)


def parse_save(text: str, source: str = "ipvsadm.txt") -> IpvsTable:
    """Parse `ipvsadm-save -n` output (``-A`` service and ``-a`` real-server lines)."""
    table = IpvsTable(source)
    by_key: dict[tuple, VirtualServer] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = line.split()
        if words[0] not in ("-A", "-a"):
            raise ParseError(source, f"not an `ipvsadm-save` line: {line[:80]!r}", number)
        proto, ip, port, fwmark, i = _save_service(words, source, number)
        key = (proto, ip, port, fwmark)
        opts = words[i:]
        if words[0] == "-A":
            vs = VirtualServer(proto, ip, port, "wlc", fwmark=fwmark,
                               family=6 if (ip and ":" in ip) or "-6" in opts else 4, evidence=line)
            _save_service_opts(vs, opts, source, number)
            table.services.append(vs)
            by_key[key] = vs
        else:
            defined = by_key.get(key)
            if defined is None:
                raise ParseError(source, "real server for a virtual server not defined above", number)
            defined.reals.append(_save_real(opts, line, source, number))
    return table


def _save_service_opts(vs: VirtualServer, opts: list[str], source: str, number: int) -> None:
    i = 0
    try:
        while i < len(opts):
            opt = opts[i]
            if opt in ("-s", "--scheduler"):
                vs.scheduler = opts[i + 1]
                i += 2
            elif opt in ("-p", "--persistent"):
                vs.persistent = int(opts[i + 1]) if i + 1 < len(opts) and opts[i + 1].isdigit() else 300
                i += 2 if i + 1 < len(opts) and opts[i + 1].isdigit() else 1
            elif opt in ("-M", "--netmask"):
                vs.netmask = opts[i + 1]
                i += 2
            elif opt in ("--pe", "-b", "--sched-flags"):
                vs.flags.append(f"{opt} {opts[i + 1]}")
                i += 2
            elif opt in ("-o", "--ops"):
                vs.flags.append("ops")
                i += 1
            elif opt == "-6":
                i += 1
            else:
                raise ParseError(source, f"unknown ipvsadm-save option {opt!r}", number)
    except (IndexError, ValueError) as e:
        raise ParseError(source, f"bad option value near {opts[i]!r}", number) from e


def _save_real(opts: list[str], line: str, source: str, number: int) -> RealServer:
    ip: str | None = None
    port = 0
    forward, weight = "Route", 1  # ipvsadm's defaults: gatewaying, weight 1
    i = 0
    try:
        while i < len(opts):
            opt = opts[i]
            if opt in ("-r", "--real-server"):
                ip, port = split_addr_port(opts[i + 1], source, number)
                i += 2
            elif opt in _SAVE_FORWARD:
                forward = _SAVE_FORWARD[opt]
                i += 1
            elif opt in ("-w", "--weight"):
                weight = int(opts[i + 1])
                i += 2
            elif opt in ("-x", "-y", "--u-threshold", "--l-threshold", "--tun-type", "--tun-port",
                         "--tun-nocsum", "--tun-csum", "--tun-remcsum"):
                i += 1 if opt.startswith("--tun-") and opt.endswith("csum") else 2
            else:
                raise ParseError(source, f"unknown ipvsadm-save option {opt!r}", number)
    except (IndexError, ValueError) as e:
        raise ParseError(source, f"bad option value near {opts[i]!r}", number) from e
    if ip is None:
        raise ParseError(source, "real server line without -r ADDRESS:PORT", number)
    return RealServer(ip, port, forward, weight, evidence=line)


def render_list(table: IpvsTable, version: str = "1.2.1", size: int = 4096) -> str:
    """The table as `ipvsadm -Ln --exact` prints it (so live captures keep the stock format)."""
    out = [f"IP Virtual Server version {version} (size={size})",
           "Prot LocalAddress:Port Scheduler Flags",
           "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn"]
    for vs in table.services:
        if vs.fwmark is not None:
            name = f"FWM  {vs.fwmark}" + (" IPv6" if vs.family == 6 else "")
        else:
            name = f"{vs.protocol}  {vs.address}"
        line = f"{name} {vs.scheduler}"
        if vs.persistent is not None:
            line += f" persistent {vs.persistent}"
            if vs.netmask and vs.netmask not in ("255.255.255.255", "128"):
                line += f" mask {vs.netmask}"
        extra = [f for f in vs.flags if f == "ops" or f.startswith("pe ")]
        if extra:
            line += " " + " ".join(extra)
        out.append(line)
        for real in vs.reals:
            out.append(f"  -> {real.address:<28} {real.forward:<7} {real.weight:<6} {real.active:<10} "
                       f"{real.inactive:<10}".rstrip())
    return "\n".join(out) + "\n"
