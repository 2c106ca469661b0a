"""Parse what the user types into the trace view: ``IP:PORT[/tcp|udp|sctp] [from SRC]``."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from kubectl_proxydoctor.errors import ParseError
from kubectl_proxydoctor.model import Packet

PROTOCOLS = ("TCP", "UDP", "SCTP")


def _ip(text: str, what: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError as e:
        raise ParseError("trace", f"{what} {text!r} is not an IP address") from e


def parse_packet(text: str, resolve: Callable[[str, int], str] | None = None) -> Packet:
    """``10.96.0.10:53/udp``, ``[fd00::10]:80``, ``10.96.0.1:443 from 10.244.1.5``; with ``resolve``
    (name, IP family) -> IP, the source may also be ``node`` or a pod name."""
    words = text.split()
    if not words:
        raise ParseError("trace", "enter a destination, e.g. 10.96.0.10:53/udp")
    src_text = None
    if len(words) == 3 and words[1].lower() == "from":
        src_text = words[2]
    elif len(words) != 1:
        raise ParseError("trace", "expected IP:PORT[/PROTO] [from SRC-IP|node|POD]")
    dest, _, proto = words[0].partition("/")
    proto = (proto or "tcp").upper()
    if proto not in PROTOCOLS:
        raise ParseError("trace", f"unknown protocol {proto.lower()!r}; use tcp, udp or sctp")
    if dest.startswith("["):
        host, sep, port = dest[1:].partition("]:")
    else:
        host, sep, port = dest.rpartition(":")
    if not sep or not host:
        raise ParseError("trace", f"{dest!r}: expected IP:PORT (IPv6 as [ADDR]:PORT)")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ParseError("trace", f"port {port!r} is not a number from 1 to 65535")
    dst = _ip(host, "destination")
    src = None
    if src_text is not None:
        try:
            src = _ip(src_text, "source")
        except ParseError:
            if resolve is None:
                raise
            try:
                src = resolve(src_text, 6 if ":" in dst else 4)
            except ValueError as e:
                raise ParseError("trace", f"source {e}") from None
    return Packet(dst=dst, port=int(port), protocol=proto, src=src)


def packet_text_for(frontends: list[str], protocol: str) -> str:
    """A ready-to-trace destination from a service port's frontends (first IP:PORT one)."""
    for frontend in frontends:
        try:
            packet = parse_packet(f"{frontend}/{protocol.lower()}")
        except ParseError:
            continue
        return f"{frontend}/{packet.protocol.lower()}"
    return ""
