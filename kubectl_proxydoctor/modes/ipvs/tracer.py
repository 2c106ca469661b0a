"""Trace a new connection on an IPVS node.

Order on the node (netfilter hooks): nat PREROUTING/OUTPUT (kube-proxy marks for masquerade by
ipset), filter INPUT (KUBE-IPVS-FILTER, source-range firewall), then IPVS at LOCAL_IN picks a real
server by scheduler and weight, then nat POSTROUTING (KUBE-POSTROUTING: masquerade marked traffic
and hairpin via KUBE-LOOP-BACK). IPVS only sees packets to local addresses (kube-ipvs0 or node IPs).
The iptables dump is parsed with the iptables mode's parser and walked with its tracer, extended
to answer ``-m set --match-set`` from the captured ipsets.
"""

from __future__ import annotations

import ipaddress

from kubectl_proxydoctor import nodeinfo
from kubectl_proxydoctor.errors import UsageError
from kubectl_proxydoctor.formats.ipvs_table import VirtualServer
from kubectl_proxydoctor.model import (
    Endpoint,
    Frontend,
    Packet,
    ServicePortName,
    TraceOutcome,
    TraceResult,
    TraceStep,
)
from kubectl_proxydoctor.modes.iptables.parse import Rule, Ruleset
from kubectl_proxydoctor.modes.iptables.tracer import Tracer, _State
from kubectl_proxydoctor.modes.ipvs.state import DUMMY_INTERFACE, IpvsState, read_state
from kubectl_proxydoctor.modes.ipvs.view import classify, frontend_for, frontend_name
from kubectl_proxydoctor.snapshot import NodeSnapshot


class IpsetTracer(Tracer):
    """The iptables tracer, with ``-m set`` answered from kube-proxy's ipsets."""

    def __init__(self, ruleset: Ruleset, local: set[str] | None, state: IpvsState, source: str) -> None:
        super().__init__(ruleset, local, source)
        self.state = state
        self.src: str | None = None

    def _values(self, name: str, flags: str, st: _State, pkt: Packet) -> list[str] | None:
        ipset = (self.state.ipsets or {}).get(name)
        if ipset is None:
            return None
        values: list[str] = []
        for dim, flag in zip(ipset.dimensions, flags.split(","), strict=False):
            if dim == "port":
                if flag != "dst":
                    return None  # source ports are unknown
                values.append(f"{pkt.protocol.lower()}:{st.port}")
            elif flag == "dst":
                values.append(st.dst)
            elif pkt.src is None:
                return None
            else:
                values.append(pkt.src)
        return values

    def match(self, rule: Rule, st: _State, pkt: Packet) -> tuple[bool, float | None, str]:
        sets = rule.match_sets
        if not sets:
            return super().match(rule, st, pkt)
        why: list[str] = []
        for name, flags, negated in sets:
            if self.state.ipsets is None:
                self._note("ipset-save.txt not captured: '-m set' rules were taken as not matching")
                return False, None, ""
            values = self._values(name, flags, st, pkt)
            if values is None:
                if name not in (self.state.ipsets or {}):
                    self._note(f"ipset {name} is not in ipset-save.txt: taken as empty")
                    hit = None
                else:
                    self._note(f"'-m set {name} {flags}' needs the packet source (--src) or port: "
                               "taken as not matching")
                    return False, None, ""
            else:
                hit = self.state.ipsets[name].contains(values)
            if (hit is not None) == negated:
                return False, None, ""
            why.append(f"{'! ' if negated else ''}set {name} {flags}"
                       + (f" (entry {hit.raw})" if hit is not None else ""))
        rule.match_sets = None
        try:
            ok, prob, rest = super().match(rule, st, pkt)
        finally:
            rule.match_sets = sets
        if rest == "matches every packet":
            rest = ""
        return ok, prob, ", ".join(w for w in [*why, rest] if w) if ok else ""


def _ruleset(snapshot: NodeSnapshot, family: int) -> tuple[Ruleset, str] | None:
    from kubectl_proxydoctor.modes.iptables.sources import dumps

    for dump in dumps(snapshot):
        if dump.family == family and dump.ruleset.chain("nat", "KUBE-SERVICES") is not None:
            return dump.ruleset, dump.source
    return None


def _service_name(snapshot: NodeSnapshot, vs: VirtualServer, frontend: Frontend) -> ServicePortName:
    """The API's name for the frontend when api.json was captured, else the frontend's own name."""
    if snapshot.has("api.json"):
        from kubectl_proxydoctor.cluster import of_capture
        from kubectl_proxydoctor.errors import ProxyDoctorError
        from kubectl_proxydoctor.modes.ipvs.labels import frontend_index, name_for

        try:  # the capture's ClusterState, decoded once per snapshot; its index built once too
            cluster = of_capture(snapshot)
            index = snapshot.derived("ipvs.api-frontends", ("api.json",),
                                     lambda: frontend_index(cluster)) if cluster is not None else {}
            found = name_for(frontend, index)
        except ProxyDoctorError:
            found = None
        if found is not None:
            return found[0]
    return frontend_name(frontend)


def trace(snapshot: NodeSnapshot, packet: Packet) -> list[TraceResult]:
    """The packet through IPVS and the iptables rules IPVS mode keeps (empty without an IPVS table)."""
    state = read_state(snapshot)
    if state is None or not state.table.services:
        return []
    return [trace_state(snapshot, state, packet)]


def trace_state(snapshot: NodeSnapshot, state: IpvsState, packet: Packet) -> TraceResult:
    """One packet through nat, filter, IPVS (every real server an outcome) and POSTROUTING."""
    try:
        dst = str(ipaddress.ip_address(packet.dst.strip("[]")))
        src = str(ipaddress.ip_address(packet.src.strip("[]"))) if packet.src else None
    except ValueError as e:
        raise UsageError(f"not an IP address: {e}") from e
    pkt = Packet(dst, packet.port, packet.protocol.upper(), src)
    result = TraceResult(packet=packet, mode="ipvs", source="ipvs")
    notes = list(state.notes)
    local = (state.ipvs0 or set()) | state.node_ips if state.ipvs0 is not None else None
    family = 6 if ":" in dst else 4
    found = _ruleset(snapshot, family)
    tracer = IpsetTracer(found[0], local, state, found[1]) if found else None
    if tracer is None:
        notes.append("no iptables dump with kube-proxy's nat KUBE-SERVICES: masquerade not traced")
    local_src = pkt.src is not None and local is not None and pkt.src in local
    if pkt.src is None:
        notes.append("no --src: traced as a packet arriving from outside the node (nat PREROUTING)")

    # 1. nat PREROUTING / OUTPUT: kube-proxy marks traffic for masquerade by ipset
    start = _State(dst, pkt.port)
    branches: list[tuple[_State, str | None]] = [(start, None)]
    hook = "OUTPUT" if local_src else "PREROUTING"
    if tracer is not None and tracer.rs.chain("nat", hook) is not None:
        branches = tracer.walk("nat", hook, start, pkt)
    st, verdict = branches[0]
    if verdict in ("drop", "reject"):
        result.outcomes = [TraceOutcome(verdict, probability=1.0, path=st.path)]  # type: ignore[arg-type]
        result.notes = _notes(notes, tracer)
        return result

    vs = state.table.find(pkt.protocol, dst, pkt.port)
    is_local = local is None or dst in local or dst.startswith("127.") or dst == "::1"
    if local is None:
        notes.append("node addresses unknown (no ip-addr.json): destination assumed local")

    # 2. filter INPUT for local destinations: KUBE-IPVS-FILTER, KUBE-PROXY-FIREWALL
    fhook = "OUTPUT" if local_src else "INPUT"
    if is_local and tracer is not None and tracer.rs.chain("filter", fhook) is not None:
        for s2, v2 in tracer.walk("filter", fhook, st, pkt, only_kube=True):
            st, fverdict = s2, v2
            break
        if fverdict in ("drop", "reject"):
            result.outcomes = [TraceOutcome(fverdict, probability=1.0, path=st.path)]  # type: ignore[arg-type]
            result.notes = _notes(notes, tracer)
            return result

    if not is_local:
        notes.append(f"{dst} is not a local address (not on {DUMMY_INTERFACE}, not a node address): IPVS "
                     "only sees locally delivered packets, so it is routed on untouched"
                     + (f" although virtual server {vs.address} exists" if vs else ""))
        result.outcomes = [TraceOutcome("no-match", probability=1.0, path=st.path)]
        result.notes = _notes(notes, tracer)
        return result
    if vs is None:
        notes.append(f"no IPVS virtual server for {pkt.protocol} {Endpoint(dst, pkt.port)}: delivered to the "
                     "node itself")
        result.outcomes = [TraceOutcome("accept", probability=1.0, path=st.path)]
        result.notes = _notes(notes, tracer)
        return result

    # 3. IPVS: the virtual server and its scheduler
    frontend = frontend_for(state, vs, tracer.rs if tracer else None)
    kind, _, why = classify(state, vs)
    name = _service_name(snapshot, vs, frontend)
    vs_step = TraceStep("ipvs", vs.evidence, f"virtual server {vs.address}/{vs.protocol.lower()}: {kind} "
                        f"({why}), scheduler {vs.scheduler}")
    if vs.persistent is not None:
        notes.append(f"persistent {vs.persistent}: a client returning within {vs.persistent} s goes to the "
                     "real server it had")
    live = [t for t in frontend.targets if t.probability > 0]
    if not live:
        detail = "no real servers" if not vs.reals else "every real server has weight 0"
        notes.append(f"{detail}: IPVS finds no destination and answers ICMP port unreachable")
        result.outcomes = [TraceOutcome("reject", probability=1.0, service=name, path=[*st.path, vs_step])]
        result.notes = _notes(notes, tracer)
        return result
    total_weight = sum(max(r.weight, 0) for r in vs.reals)
    outcomes: list[TraceOutcome] = []
    for real, target in zip(vs.reals, frontend.targets, strict=True):
        if real.weight <= 0:
            notes.append(f"real server {real.address} has weight 0 (draining: terminating endpoint): no new "
                         "connections")
            if vs.persistent is not None:
                quiescent = nodeinfo.sysctls(snapshot).get("net.ipv4.vs.expire_quiescent_template")
                if quiescent != "1":
                    shown = quiescent if quiescent is not None else "not captured"
                    notes.append(f"persistence: a returning client's template can still send it to "
                                 f"{real.address} (net.ipv4.vs.expire_quiescent_template is {shown}; "
                                 "kube-proxy sets 1)")
        share = (f"rr: 1 of {len(live)} real servers with weight > 0" if vs.scheduler == "rr"
                 else f"{vs.scheduler}: weight {real.weight} of {total_weight}")
        path = [*st.path, vs_step,
                TraceStep(f"ipvs/{vs.scheduler}", real.evidence,
                          f"{real.forward} to {real.address}, weight {real.weight}: "
                          f"p={target.probability:.3g} ({share})")]
        masq, post = _postrouting(tracer, st, pkt, real.ip, real.port)
        outcomes.append(TraceOutcome("dnat", destination=Endpoint(real.ip, real.port),
                                     probability=target.probability, masquerade=masq, service=name,
                                     path=path + post))
    result.outcomes = sorted(outcomes, key=lambda o: (-o.probability, str(o.destination)))
    result.notes = _notes(notes, tracer)
    return result


def _postrouting(tracer: IpsetTracer | None, st: _State, pkt: Packet, ip: str,
                 port: int) -> tuple[bool, list[TraceStep]]:
    """Masquerade decision in nat POSTROUTING after IPVS rewrote the destination."""
    if tracer is None or tracer.rs.chain("nat", "POSTROUTING") is None:
        return False, []
    after = _State(ip, port, mark=st.mark, path=[])
    for s, _verdict in tracer.walk("nat", "POSTROUTING", after, pkt):
        return s.masquerade, s.path
    return False, []


def _notes(notes: list[str], tracer: IpsetTracer | None) -> list[str]:
    out: list[str] = []
    for note in notes + (tracer.notes if tracer else []):
        if note not in out:
            out.append(note)
    return out
