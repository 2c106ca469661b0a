"""The packet's fate: one line per trace saying where a new connection really ends.

Mode independent: it reads a TraceResult (outcomes with their rule paths) and the node facts a
capture holds (node addresses from ip-addr.json, the API's EndpointSlices and Services from
api.json, conntrack.txt) and says, per outcome and in one line for the whole trace: DNAT to which
endpoints and then forwarded to a pod / delivered locally, masqueraded or not; REJECT; DROP;
delivered to the node itself (INPUT); or routed on unchanged (nothing on this node owns the
address). Endpoints the API does not list are marked stale, terminating ones terminating.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kubectl_proxydoctor.clip import clip
from kubectl_proxydoctor.model import Endpoint, Packet, TraceOutcome, TraceResult
from kubectl_proxydoctor.node_facts import NodeFacts

_LISTED = 4  # endpoints named in the one-line fate before "and N more"
_COMMENT = re.compile(r'"([^"]+)"|--comment (\S+)')
_ACCEPT = re.compile(r"(-j ACCEPT|\baccept)\s*$")


@dataclass(frozen=True)
class OutcomeFate:
    """Where one outcome of the trace ends."""

    kind: str  # pod | local | node | routed | reject | drop
    text: str
    marks: tuple[str, ...] = ()


@dataclass
class Fate:
    """The whole trace's fate: the one line, and each outcome's part in it."""

    line: str
    outcomes: list[OutcomeFate]
    kinds: dict[str, float] = field(default_factory=dict)  # probability per kind of ending


# -- one outcome -----------------------------------------------------------------------------------


def outcome_fate(outcome: TraceOutcome, packet: Packet, facts: NodeFacts) -> OutcomeFate:
    """Where this outcome of the trace ends, in words."""
    if outcome.verdict == "reject":
        return OutcomeFate("reject", _with_reason("REJECT: the client gets 'connection refused'", outcome))
    if outcome.verdict == "drop":
        return OutcomeFate("drop", _with_reason("DROP: the client times out", outcome))
    masq = "masqueraded" if outcome.masquerade else "source kept"
    if outcome.verdict == "dnat" and outcome.destination is not None:
        ep = outcome.destination
        marks = _endpoint_marks(ep, outcome.service.service if outcome.service else None, facts)
        if facts.is_node_address(ep.ip):
            return OutcomeFate("local", f"DNAT to {ep}: delivered locally (a node address), {masq}", marks)
        return OutcomeFate("pod", f"DNAT to {ep}: forwarded to {_owner(ep.ip, facts)}, {masq}", marks)
    dst = Endpoint(packet.dst, packet.port)
    head = "no DNAT"
    accepted = _accepted_by(outcome) if outcome.verdict == "accept" else None
    if accepted:
        head = f"ACCEPT without DNAT ({accepted} ended NAT before any DNAT)"
    local = facts.is_node_address(packet.dst)
    if local:
        return OutcomeFate("node", f"{head}: delivered to the node itself (INPUT, {dst}/"
                                   f"{packet.protocol.lower()}): {_listener(packet, facts)}")
    if local is None:
        return OutcomeFate("routed", f"{head}: node addresses not captured (no ip-addr.json): delivered to "
                                     f"the node if {packet.dst} is one of its addresses, else routed on "
                                     "unchanged")
    return OutcomeFate("routed", f"{head}: routed on unchanged to {dst}: {_routed_owner(packet.dst, facts)}")


def _with_reason(text: str, outcome: TraceOutcome) -> str:
    reason = _reason(outcome)
    return f"{text} ({reason})" if reason else text


def _reason(outcome: TraceOutcome) -> str:
    """The deciding rule's own words: the last rule's comment, else its chain and text (IPVS: why)."""
    if not outcome.path:
        return ""
    step = outcome.path[-1]
    found = _comments(step.why) or _comments(step.rule)
    if found:
        return clip(found[-1])
    if step.chain == "ipvs" and outcome.verdict == "reject":
        return f"IPVS {step.why.split(': ', 1)[0]} has no real server with weight > 0"
    if step.chain.startswith("ipvs") and step.why:
        return clip(step.why)
    return clip(f"{step.chain}: {step.rule}")  # a rule can carry a megabyte comment


def _comments(text: str) -> list[str]:
    return [a or b for a, b in _COMMENT.findall(text)]


def _accepted_by(outcome: TraceOutcome) -> str | None:
    """The NAT rule that accepted the packet (its comment, else chain and text), if one did."""
    for step in outcome.path:
        table = step.chain.split("/", 1)[0] if "/" in step.chain.split(" ", 1)[0] else None
        if table in ("filter", "mangle", "raw", "security") or step.chain.startswith("ipvs"):
            continue
        if _ACCEPT.search(step.rule):
            found = _comments(step.rule)
            return clip(f"'{found[-1]}'" if found else f"{step.chain}: {step.rule}")
    return None


def _endpoint_marks(ep: Endpoint, service: str | None, facts: NodeFacts) -> tuple[str, ...]:
    if facts.endpoints is None:
        return ()
    info = facts.endpoint(ep, service)
    if info is None:
        whose = f"of {service} " if service else ""
        gone = "" if ep.ip in facts.endpoints else \
            " (no EndpointSlice has this IP at all: if its pod is gone, the connection times out)"
        return (f"stale: no EndpointSlice {whose}lists {ep}{gone}",)
    if info.terminating:
        return ("terminating",)
    return ()


def _owner(ip: str, facts: NodeFacts) -> str:
    pod = facts.pod_names.get(ip)
    node = facts.pod_nodes.get(ip)
    where = ""
    if node is not None and facts.node is not None:
        where = " on this node" if node == facts.node else f" on node {node}"
    if pod:
        return f"pod {pod}{where}"
    if facts.endpoints is None:
        return "a pod (pod names not captured: no api.json)"
    return f"{ip}{where} (no EndpointSlice names a pod with this IP)"


def _listener(packet: Packet, facts: NodeFacts) -> str:
    port = f"{packet.protocol.lower()}/{packet.port}"
    if facts.listening is None:
        return (f"refused unless a host process listens on {port} (listening sockets not captured)"
                if packet.protocol.upper() == "TCP" else
                f"answered only if a host process listens on {port} (listening sockets not captured)")
    if (packet.protocol.lower(), packet.port) in facts.listening:
        return f"a host socket was captured listening on {port}"
    return f"no host socket was captured listening on {port}: refused"


def _routed_owner(ip: str, facts: NodeFacts) -> str:
    svc = facts.service_ips.get(ip)
    if svc is not None:
        name, why = svc
        if why:
            return (f"the address of Service {name}, which kube-proxy does not proxy ({why}); "
                    "nothing owns it: times out")
        return (f"the address of Service {name}, which exists only in DNAT rules; nothing owns the address "
                "itself: times out")
    pod = facts.pod_names.get(ip)
    if pod is not None:
        return f"the IP of pod {pod}: reaches it directly"
    return f"times out unless something off this node owns {ip}"


# -- the whole trace -------------------------------------------------------------------------------


def trace_fate(result: TraceResult, facts: NodeFacts, others: list[TraceResult] | None = None) -> Fate:
    """The one-line fate of one trace, with each outcome's part. With ``others`` (the same packet
    through the node's other rule sources): a trace no rule of which touches the packet defers to
    the sources that do, since the packet passes these rules untouched."""
    parts = [outcome_fate(o, result.packet, facts) for o in result.outcomes]
    kinds: dict[str, float] = {}
    for o, f in zip(result.outcomes, parts, strict=True):
        kinds[f.kind] = kinds.get(f.kind, 0.0) + o.probability
    if not parts:
        return Fate("fate: unknown (these rules do not handle this packet)", [], {})
    deciders = [r.source for r in others or [] if r is not result and _handles(r)]
    if deciders and not _handles(result):
        return Fate(f"fate: no rule here touches this packet: it passes these {result.source} rules "
                    f"untouched, and {', '.join(deciders)} decides its fate", parts, {"passes": 1.0})
    return Fate("fate: " + summary(result.outcomes, parts, result.packet.src), parts, kinds)


def _handles(result: TraceResult) -> bool:
    return any(o.verdict != "no-match" for o in result.outcomes)


def summary(outcomes: list[TraceOutcome], parts: list[OutcomeFate], src: str | None = None) -> str:
    """Outcomes grouped by how they end, most likely first, endpoints with their shares."""
    groups: dict[tuple, list[tuple[TraceOutcome, OutcomeFate]]] = {}
    for o, f in zip(outcomes, parts, strict=True):
        key = ("dnat",) if f.kind in ("pod", "local") else (f.kind, f.text)
        groups.setdefault(key, []).append((o, f))
    ordered = sorted(groups.values(), key=lambda g: -sum(o.probability for o, _ in g))
    texts = []
    for group in ordered:
        share = sum(o.probability for o, _ in group)
        prefix = "" if len(ordered) == 1 else f"{share:.0%} "
        kind = group[0][1].kind
        if kind in ("pod", "local"):
            texts.append(prefix + _dnat_group(group, src))
        else:
            texts.append(prefix + group[0][1].text)
    return "; ".join(texts)


def _masquerade(group: list[tuple[TraceOutcome, OutcomeFate]], src: str | None) -> str:
    masked = [o for o, _ in group if o.masquerade]
    if len(masked) == len(group):
        return "masqueraded"
    if not masked:
        return "source kept"
    shown = ", ".join(str(o.destination) for o in masked[:2]) + (" ..." if len(masked) > 2 else "")
    hairpin = len(masked) == 1 and masked[0].destination is not None and masked[0].destination.ip == src
    return f"masqueraded to {shown}{' (hairpin: the client is that endpoint)' if hairpin else ''}, " \
        "source kept otherwise"


def _pct(p: float) -> str:
    return f"{p:.0%}" if p >= 0.01 or p == 0 else f"{p:.2%}"


def _dnat_group(group: list[tuple[TraceOutcome, OutcomeFate]], src: str | None) -> str:
    eps = []
    for o, f in group[:_LISTED]:
        owner = f.text.split(": forwarded to ", 1)[1].rsplit(", ", 1)[0] if f.kind == "pod" else ""
        mark = f" [{'; '.join(f.marks)}]" if f.marks else ""
        who = f" {owner}" if owner.startswith("pod ") else ""
        eps.append(f"{o.destination} {_pct(o.probability)}{who}{mark}")
    rest = len(group) - _LISTED
    if rest > 0:
        shares = {round(o.probability, 4) for o, _ in group[_LISTED:]}
        each = f", {_pct(group[_LISTED][0].probability)} each" if len(shares) == 1 else ""
        eps.append(f"and {rest} more{each}")
    stale = sum(1 for _, f in group if any(m.startswith("stale") for m in f.marks))
    kinds = {f.kind for _, f in group}
    where = ("delivered locally" if kinds == {"local"} else "forwarded to a pod" if kinds == {"pod"}
             else "forwarded to a pod or delivered locally")
    masq = _masquerade(group, src)
    n = len(group)
    text = f"DNAT to {n} endpoint{'s' if n > 1 else ''} ({', '.join(eps)}), {where}, {masq}"
    if stale and len(group) > _LISTED:
        text += f"; {stale} of them stale (not in the API)"
    return text
