"""kube-proxy's nftables mode: read `table ip/ip6 kube-proxy`, interpret it, trace packets."""

from __future__ import annotations

from kubectl_proxydoctor.model import Packet, ProgrammedView, TraceResult
from kubectl_proxydoctor.snapshot import NodeSnapshot


def interpret(snapshot: NodeSnapshot) -> list[ProgrammedView]:
    """One programmed view per kube-proxy nftables table (ip, ip6) in the snapshot."""
    from kubectl_proxydoctor.modes.nftables.interpreter import interpret as _interpret

    return _interpret(snapshot)


def trace(snapshot: NodeSnapshot, packet: Packet) -> list[TraceResult]:
    """The packet through the node's nftables base chains (one result per kube-proxy table)."""
    from kubectl_proxydoctor.modes.nftables.tracer import trace as _trace

    return _trace(snapshot, packet)
