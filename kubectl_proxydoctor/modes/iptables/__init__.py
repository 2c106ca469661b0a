"""iptables mode: parse iptables-save dumps, interpret kube-proxy's chains, trace packets.

``interpret(snapshot)`` gives one ProgrammedView per backend and family that holds kube-proxy
chains (source "iptables-nft", "iptables-legacy", "ip6tables-nft", ...), with the parsed
Ruleset in ``view.raw``; ``trace(snapshot, packet)`` runs the packet through each of them.
"""

from __future__ import annotations

from functools import partial

from kubectl_proxydoctor.model import Packet, ProgrammedView, TraceResult
from kubectl_proxydoctor.snapshot import NodeSnapshot


def interpret(snapshot: NodeSnapshot) -> list[ProgrammedView]:
    """One programmed view per iptables backend+family dump that holds KUBE-* chains."""
    from kubectl_proxydoctor.modes.iptables.sources import dumps
    from kubectl_proxydoctor.modes.iptables.view import interpret_ruleset

    views: list[ProgrammedView] = []
    for dump in dumps(snapshot):
        if not dump.ruleset.kube_chains():
            continue
        views.append(snapshot.derived(f"iptables.view:{dump.source}", (dump.filename,),
                                      partial(interpret_ruleset, dump.ruleset, dump.source)))
    return views


def trace(snapshot: NodeSnapshot, packet: Packet) -> list[TraceResult]:
    """The packet through every iptables dump of its IP family that holds KUBE-* chains (not IPVS's)."""
    from kubectl_proxydoctor.modes.iptables.sources import dumps, ipvs_layout
    from kubectl_proxydoctor.modes.iptables.tracer import Tracer
    from kubectl_proxydoctor.nodeinfo import local_addresses

    family = 6 if ":" in packet.dst else 4
    local = local_addresses(snapshot) if snapshot.has("ip-addr.json") else None
    results: list[TraceResult] = []
    for dump in dumps(snapshot):
        if dump.family != family or not dump.ruleset.kube_chains() or ipvs_layout(dump.ruleset):
            continue  # IPVS mode's helper chains: the ipvs tracer follows those packets
        tracer = snapshot.derived(f"iptables.tracer:{dump.source}", (dump.filename, "ip-addr.json"),
                                  partial(Tracer, dump.ruleset, local, dump.source))
        results.append(tracer.trace(packet))
    return results
