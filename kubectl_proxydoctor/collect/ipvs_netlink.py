"""The live IPVS reader (read-only dumps over generic netlink, pyroute2): raw IPVS_SVC_ATTR_* /
IPVS_DEST_ATTR_* keys -> IpvsTable.

``table_from_messages`` is what the live reader uses on the kernel's dump replies; tests feed it
messages encoded with pyroute2's own ``ipvsmsg`` classes.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from kubectl_proxydoctor.errors import ParseError, SourceUnavailable
from kubectl_proxydoctor.formats.ipvs_table import (
    FORWARD_NAMES,
    IPPROTO_NAMES,
    SVC_F_ONEPACKET,
    SVC_F_PERSISTENT,
    IpvsTable,
    RealServer,
    VirtualServer,
)

SOURCE = "netlink IPVS"
CONN_F_FWD_MASK = 0x0007


def _addr(value: object, family: int) -> str:
    """An IPVS address attribute as text (pyroute2 decodes it; raw bytes are accepted too)."""
    if isinstance(value, bytes | bytearray):
        raw = bytes(value)
        value = socket.inet_ntop(family, raw[:4] if family == socket.AF_INET else raw[:16])
    return str(ipaddress.ip_address(str(value)))


def service_from_attrs(svc: Any) -> VirtualServer:
    """A virtual server from one IPVS_CMD_ATTR_SERVICE nest."""
    get = svc.get_attr
    af = get("IPVS_SVC_ATTR_AF") or socket.AF_INET
    family = 6 if af == socket.AF_INET6 else 4
    flags_attr = get("IPVS_SVC_ATTR_FLAGS") or {}
    flags = int(flags_attr.get("flags", 0)) if isinstance(flags_attr, dict) else int(flags_attr or 0)
    sched = get("IPVS_SVC_ATTR_SCHED_NAME") or ""
    fwmark = get("IPVS_SVC_ATTR_FWMARK")
    if fwmark:
        vs = VirtualServer("FWM", None, 0, sched, fwmark=int(fwmark), family=family)
    else:
        proto = int(get("IPVS_SVC_ATTR_PROTOCOL") or 0)
        addr = get("IPVS_SVC_ATTR_ADDR")
        if addr is None:
            raise ParseError(SOURCE, "service without IPVS_SVC_ATTR_ADDR or IPVS_SVC_ATTR_FWMARK")
        vs = VirtualServer(IPPROTO_NAMES.get(proto, str(proto)), _addr(addr, af),
                           int(get("IPVS_SVC_ATTR_PORT") or 0), sched, family=family)
    if flags & SVC_F_PERSISTENT:
        vs.persistent = int(get("IPVS_SVC_ATTR_TIMEOUT") or 0)  # seconds (kernel divides by HZ)
        netmask = get("IPVS_SVC_ATTR_NETMASK")
        if netmask is not None:
            vs.netmask = str(netmask)
    if flags & SVC_F_ONEPACKET:
        vs.flags.append("ops")
    pe = get("IPVS_SVC_ATTR_PE_NAME")
    if pe:
        vs.flags.append(f"pe {pe}")
    return vs


def dest_from_attrs(dest: Any, service_af: int) -> RealServer:
    """A real server from one IPVS_CMD_ATTR_DEST nest."""
    get = dest.get_attr
    af = get("IPVS_DEST_ATTR_ADDR_FAMILY") or service_af
    addr = get("IPVS_DEST_ATTR_ADDR")
    if addr is None:
        raise ParseError(SOURCE, "destination without IPVS_DEST_ATTR_ADDR")
    method = int(get("IPVS_DEST_ATTR_FWD_METHOD") or 0) & CONN_F_FWD_MASK
    return RealServer(_addr(addr, af), int(get("IPVS_DEST_ATTR_PORT") or 0),
                      FORWARD_NAMES.get(method, str(method)), int(get("IPVS_DEST_ATTR_WEIGHT") or 0),
                      int(get("IPVS_DEST_ATTR_ACTIVE_CONNS") or 0),
                      int(get("IPVS_DEST_ATTR_INACT_CONNS") or 0))


def table_from_messages(dump: Iterable[tuple[object, Iterable[object]]]) -> IpvsTable:
    """(service message, its destination messages) pairs -> IpvsTable, evidence as ipvsadm lines."""
    from kubectl_proxydoctor.formats.ipvsadm import render_list

    table = IpvsTable(SOURCE)
    for svc_msg, dest_msgs in dump:
        svc = svc_msg.get_attr("IPVS_CMD_ATTR_SERVICE")  # type: ignore[attr-defined]
        if svc is None:
            raise ParseError(SOURCE, "reply without IPVS_CMD_ATTR_SERVICE")
        vs = service_from_attrs(svc)
        af = socket.AF_INET6 if vs.family == 6 else socket.AF_INET
        for msg in dest_msgs:
            dest = msg.get_attr("IPVS_CMD_ATTR_DEST")  # type: ignore[attr-defined]
            if dest is not None:
                vs.reals.append(dest_from_attrs(dest, af))
        table.services.append(vs)
    # evidence: the lines `ipvsadm -Ln` would print for each entry
    lines = render_list(table).splitlines()[3:]
    it = iter(lines)
    for vs in table.services:
        vs.evidence = next(it).strip()
        for real in vs.reals:
            real.evidence = next(it).strip()
    return table


@contextmanager
def _in_netns(netns: str | None) -> Iterator[None]:
    if not netns:
        yield
        return
    from pyroute2 import netns as pr_netns

    pr_netns.pushns(netns)
    try:
        yield
    finally:
        pr_netns.popns()


def _service_key(vs: VirtualServer) -> Any:
    from pyroute2.ipvs import IPVSService

    af = socket.AF_INET6 if vs.family == 6 else socket.AF_INET
    if vs.fwmark is not None:
        return IPVSService(af=af, fwmark=vs.fwmark)
    proto = {v: k for k, v in IPPROTO_NAMES.items()}[vs.protocol]
    return IPVSService(af=af, protocol=proto, addr=vs.ip, port=vs.port)


def read_live(netns: str | None = None) -> IpvsTable:
    """Dump every virtual server and its real servers from the kernel (read-only GET dumps)."""
    try:
        from pyroute2 import IPVS
    except ImportError as e:  # pragma: no cover
        raise SourceUnavailable(f"pyroute2 IPVS support missing: {e}") from e
    try:
        with _in_netns(netns):
            sock = IPVS()
    except Exception as e:
        raise SourceUnavailable(f"IPVS netlink family not available: {e}") from e
    try:
        services = list(sock.service("dump"))
        pairs = []
        for msg in services:
            vs = service_from_attrs(msg.get_attr("IPVS_CMD_ATTR_SERVICE"))
            pairs.append((msg, list(sock.dest("dump", service=_service_key(vs)))))
        return table_from_messages(pairs)
    except (ParseError, SourceUnavailable):
        raise
    except Exception as e:
        raise SourceUnavailable(f"IPVS netlink dump failed: {type(e).__name__}: {e}") from e
    finally:
        sock.close()
