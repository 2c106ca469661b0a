"""kube-proxy's nftables mode: read `table ip/ip6 kube-proxy`, interpret it, trace packets."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from kubectl_proxydoctor.model import Packet, ProgrammedView, TraceResult
from kubectl_proxydoctor.snapshot import NodeSnapshot

if TYPE_CHECKING:
    from kubectl_proxydoctor.modes.nftables.layout import Generation


def interpret(snapshot: NodeSnapshot, lb_ips: Iterable[str] = ()) -> list[ProgrammedView]:
    """One programmed view per kube-proxy nftables table (ip, ip6) in the snapshot; ``lb_ips``
    (the API's LoadBalancer ingress IPs) label LoadBalancer frontends."""
    from kubectl_proxydoctor.modes.nftables.interpreter import interpret as _interpret

    return _interpret(snapshot, lb_ips)


def trace(snapshot: NodeSnapshot, packet: Packet) -> list[TraceResult]:
    """The packet through the node's nftables base chains (one result per kube-proxy table)."""
    from kubectl_proxydoctor.modes.nftables.tracer import trace as _trace

    return _trace(snapshot, packet)


def layout_generations(snapshot: NodeSnapshot) -> dict[str, Generation | None]:
    """The kube-proxy layout generation of each kube-proxy table in the snapshot ("ip", "ip6"):
    a ``layout.Generation`` (name, description, evidence), or None when the table shows no known
    generation. Empty when nft-ruleset.json was not captured. For ``status`` / ``-o json``."""
    from kubectl_proxydoctor.modes.nftables.interpreter import load_ruleset
    from kubectl_proxydoctor.modes.nftables.layout import generation

    ruleset = load_ruleset(snapshot)
    if ruleset is None:
        return {}
    return {table.family: generation(table) for table in ruleset.kube_proxy_tables()}
