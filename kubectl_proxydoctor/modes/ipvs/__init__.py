"""kube-proxy's IPVS mode: virtual servers, real servers, kube-ipvs0 and ipsets.

``interpret(snapshot)`` -> the programmed view; ``trace(snapshot, packet)`` -> trace results.
"""

from __future__ import annotations

from kubectl_proxydoctor.model import Packet, ProgrammedView, TraceResult
from kubectl_proxydoctor.snapshot import NodeSnapshot


def interpret(snapshot: NodeSnapshot) -> list[ProgrammedView]:
    """One IPVS view when the snapshot holds an IPVS table; empty otherwise."""
    from kubectl_proxydoctor.modes.ipvs.view import interpret as _interpret

    return _interpret(snapshot)


def trace(snapshot: NodeSnapshot, packet: Packet) -> list[TraceResult]:
    """The packet through IPVS (virtual server, scheduler) and the iptables rules IPVS mode keeps."""
    from kubectl_proxydoctor.modes.ipvs.tracer import trace as _trace

    return _trace(snapshot, packet)
