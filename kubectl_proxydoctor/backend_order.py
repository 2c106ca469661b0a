"""Two iptables backends with rules for one packet: which one the kernel applies first, and why."""

from __future__ import annotations

from dataclasses import dataclass

from kubectl_proxydoctor.model import Endpoint, Packet, TraceResult
from kubectl_proxydoctor.node_facts import NodeFacts

_BACKENDS = ("iptables-legacy", "iptables-nft")


@dataclass
class BackendOrder:
    """Which iptables backend's rules take the packet when both hold rules for it."""

    first: str | None  # the source that takes the packet, None when the capture cannot tell
    text: str


def backend_order(results: list[TraceResult], facts: NodeFacts) -> BackendOrder | None:
    """With rules for this packet in both iptables backends: which one the kernel applies first,
    why, and the conntrack evidence (None when only one backend has rules for it)."""
    by_source = {r.source: r for r in results if r.mode == "iptables" and r.source in _BACKENDS}
    if len(by_source) < 2 or not all(r.outcomes for r in by_source.values()):
        return None
    dnats = {s: {o.destination for o in r.outcomes if o.verdict == "dnat"} for s, r in by_source.items()}
    handled = [s for s, r in by_source.items() if any(o.verdict != "no-match" for o in r.outcomes)]
    if not handled:
        return None
    if len(handled) == 1:
        other = next(s for s in by_source if s != handled[0])
        return BackendOrder(handled[0], f"only {handled[0]} has a rule for this packet ({other}'s rules "
                                        "let it pass untouched), so its fate applies whichever runs first")
    packet = next(iter(by_source.values())).packet
    why = ("both backends hook nat at the same priority (-100, NF_IP_PRI_NAT_DST); at equal priority "
           "the kernel runs the hook registered last first (nf_hook_entries_grow inserts it ahead), and "
           "the first nat table that binds a DNAT wins; the capture does not record which registered last")
    only = [s for s, d in dnats.items() if d] if sum(1 for d in dnats.values() if d) == 1 else []
    evidence = _conntrack_evidence(packet, dnats, facts)
    if evidence is not None:
        first, seen = evidence
        return BackendOrder(first, f"{why}. conntrack.txt shows connections to {packet.dst}:{packet.port} "
                                   f"sent to {seen}, which only {first} DNATs to: {first} took the packet")
    if only:
        return BackendOrder(only[0], f"{why}. Only {only[0]} DNATs this packet, so its DNAT applies "
                                     "whichever runs first")
    if facts.conntrack_text is None:
        return BackendOrder(None, f"{why}. conntrack.txt was not captured: either backend's fate may apply")
    return BackendOrder(None, f"{why}. conntrack.txt has no connection to {packet.dst}:{packet.port} that "
                              "tells them apart: either backend's fate may apply")


def _conntrack_evidence(packet: Packet, dnats: dict[str, set], facts: NodeFacts) -> tuple[str, str] | None:
    if not facts.conntrack_text:
        return None
    from kubectl_proxydoctor.conntrack import parse_conntrack
    from kubectl_proxydoctor.errors import ProxyDoctorError

    try:
        entries = parse_conntrack(facts.conntrack_text, proto=packet.protocol.lower())
    except ProxyDoctorError:
        return None
    votes: dict[str, set[str]] = {}
    for entry in entries:
        if entry.original.dst != packet.dst or entry.original.dport != packet.port or not entry.dnat:
            continue
        ep = Endpoint(entry.reply.src, entry.reply.sport or 0)
        owners = [s for s, d in dnats.items() if ep in d]
        if len(owners) == 1:
            votes.setdefault(owners[0], set()).add(str(ep))
    if len(votes) != 1:
        return None
    first, seen = next(iter(votes.items()))
    return first, ", ".join(sorted(seen))
