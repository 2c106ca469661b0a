"""IPVS table + ipsets + kube-ipvs0 -> the mode-independent programmed view.

kube-proxy's IPVS proxier (pkg/proxy/ipvs/proxier.go) makes one virtual server per frontend:
ClusterIP, each external IP and load-balancer ingress IP (all bound to kube-ipvs0), and one per
node address for a NodePort. Endpoints are real servers, weight 1, or 0 while terminating.
IPVS has no service names: ports are named from the frontend (see labels.py to relabel them).
"""

from __future__ import annotations

from kubectl_proxydoctor.formats.ipvs_table import VirtualServer
from kubectl_proxydoctor.model import (
    Endpoint,
    Frontend,
    FrontendKind,
    ProgrammedPort,
    ProgrammedView,
    ServicePortName,
    Target,
)
from kubectl_proxydoctor.modes.iptables.parse import Ruleset
from kubectl_proxydoctor.modes.ipvs.ipset import member_key, set_name
from kubectl_proxydoctor.modes.ipvs.masquerade import describe
from kubectl_proxydoctor.modes.ipvs.state import IpvsState, read_state
from kubectl_proxydoctor.snapshot import NodeSnapshot

# schedulers that pick by connection counts: probabilities are only the weights' shares
DYNAMIC_SCHEDULERS = {"lc", "wlc", "sed", "nq", "lblc", "lblcr", "fo", "ovf", "twos"}

# schedulers that hash a packet address: one client (or destination) always gets the same server
HASH_SCHEDULERS = {"sh": "source address", "mh": "source address (Maglev hashing)",
                   "dh": "destination address"}

NODE_PORT_SETS = {"TCP": "KUBE-NODE-PORT-{}TCP", "UDP": "KUBE-NODE-PORT-{}UDP",
                  "SCTP": "KUBE-NODE-PORT-{}SCTP-HASH"}


def scheduler_probabilities(vs: VirtualServer) -> list[float]:
    """Chance each real server gets a new connection: rr ignores weights except 0; others weigh."""
    weights = [max(r.weight, 0) for r in vs.reals]
    if vs.scheduler == "rr":
        live = sum(1 for w in weights if w > 0)
        return [(1.0 / live if w > 0 else 0.0) for w in weights] if live else [0.0] * len(weights)
    total = sum(weights)
    return [(w / total if total else 0.0) for w in weights]


# frontend kinds by kube-proxy's ipset of their addresses (a -LOCAL set: externalTrafficPolicy Local)
_ADDRESS_SETS: tuple[tuple[FrontendKind, str], ...] = (("load-balancer", "KUBE-LOAD-BALANCER"),
                                                       ("external-ip", "KUBE-EXTERNAL-IP"))


def classify(state: IpvsState, vs: VirtualServer) -> tuple[FrontendKind, str, str]:
    """(kind, policy, why) of a virtual server, from kube-proxy's ipsets and kube-ipvs0."""
    ip, proto, port = vs.ip or "", vs.protocol.lower(), vs.port
    entry = [ip, f"{proto}:{port}"]
    if state.ipsets is not None:
        if state.ipset_has("KUBE-CLUSTER-IP", entry, vs.family):
            return "cluster-ip", "cluster", "in ipset KUBE-CLUSTER-IP"
        for kind, base in _ADDRESS_SETS:
            if state.ipset_has(f"{base}-LOCAL", entry, vs.family):
                return kind, "local", f"in ipset {base}-LOCAL"
            if state.ipset_has(base, entry, vs.family):
                return kind, "cluster", f"in ipset {base}"
        sets = NODE_PORT_SETS.get(vs.protocol)
        if sets and (state.ipvs0 is None or ip not in state.ipvs0):
            value = [ip, f"{proto}:{port}"] if vs.protocol == "SCTP" else [f"{proto}:{port}"]
            if state.ipset_has(sets.format("LOCAL-"), value, vs.family):
                return "node-port", "local", f"in ipset {sets.format('LOCAL-')}"
            if state.ipset_has(sets.format(""), value, vs.family):
                return "node-port", "cluster", f"in ipset {sets.format('')}"
    if state.ipvs0 is not None and ip in state.ipvs0:
        return "cluster-ip", "cluster", "address on kube-ipvs0 (not in kube-proxy's ipsets)"
    if ip in state.node_ips:
        return "node-port", "cluster", "a node address (not on kube-ipvs0)"
    return "cluster-ip", "cluster", "not in kube-proxy's ipsets, not on kube-ipvs0"


def source_ranges(state: IpvsState, vs: VirtualServer) -> tuple[list[str], list[str]]:
    """(source ranges, evidence) of a load balancer with loadBalancerSourceRanges: it is in
    KUBE-LOAD-BALANCER-FW and its allowed sources are KUBE-LOAD-BALANCER-SOURCE-CIDR/-SOURCE-IP."""
    entry = [vs.ip or "", f"{vs.protocol.lower()}:{vs.port}"]
    if not state.ipset_has("KUBE-LOAD-BALANCER-FW", entry, vs.family):
        return [], []
    ranges: list[str] = []
    evidence = [f"ipset KUBE-LOAD-BALANCER-FW has {vs.ip},{vs.protocol.lower()}:{vs.port}"]
    for base in ("KUBE-LOAD-BALANCER-SOURCE-CIDR", "KUBE-LOAD-BALANCER-SOURCE-IP"):
        ipset = (state.ipsets or {}).get(set_name(base, vs.family))
        if ipset is None:
            continue
        for member in ipset.members:
            if len(member.parts) == 3 and member_key(member) == (vs.ip, vs.protocol, vs.port):
                value = member.parts[2][1]
                ranges.append(value if "/" in value else f"{value}/{128 if ':' in value else 32}")
                evidence.append(f"ipset-save.txt:{member.line}: add {ipset.name} {member.raw}")
    return ranges, evidence


def frontend_for(state: IpvsState, vs: VirtualServer, ruleset: Ruleset | None = None) -> Frontend:
    """One virtual server as a Frontend with its real servers as Targets (ruleset: the iptables
    dump IPVS mode keeps, to say when traffic is masqueraded)."""
    kind, policy, why = classify(state, vs)
    probabilities = scheduler_probabilities(vs)
    targets = [Target(Endpoint(r.ip, r.port), p, weight=r.weight, evidence=[r.evidence])
               for r, p in zip(vs.reals, probabilities, strict=True)]
    evidence = [f"{state.table.source}: {line}" for line in vs.lines()]
    evidence.append(f"{vs.address}/{vs.protocol.lower()}: {kind} ({why})")
    if vs.scheduler in DYNAMIC_SCHEDULERS:
        evidence.append(f"scheduler {vs.scheduler} picks by connection counts: shown as weight shares")
    elif vs.scheduler in HASH_SCHEDULERS:
        evidence.append(f"scheduler {vs.scheduler} hashes the {HASH_SCHEDULERS[vs.scheduler]}: a given "
                        "client always reaches the same real server; shares are over many clients")
    if "persistent-timeout-unscaled" in vs.flags:
        evidence.append("/proc/net/ip_vs prints persistence in jiffies and CONFIG_HZ was not captured")
    affinity = None if "persistent-timeout-unscaled" in vs.flags else vs.persistent
    ranges: list[str] = []
    if kind == "load-balancer":
        ranges, range_evidence = source_ranges(state, vs)
        evidence.extend(range_evidence)
    return Frontend(kind=kind, ip=vs.ip, port=vs.port, protocol=vs.protocol, targets=targets,
                    policy=policy, source_ranges=ranges,  # type: ignore[arg-type]
                    masquerade=describe(ruleset, kind, policy, vs.protocol, vs.family),
                    affinity_seconds=affinity, scheduler=vs.scheduler, evidence=evidence)


def frontend_name(frontend: Frontend) -> ServicePortName:
    """Name a port by its frontend: ``ip:port``, or ``nodeport:PORT`` for every NodePort server."""
    if frontend.kind == "node-port":
        name = f"nodeport:{frontend.port}"
    else:
        name = str(Endpoint(frontend.ip or "", frontend.port))
    return ServicePortName("", name, "", frontend.protocol)


def nat_ruleset(snapshot: NodeSnapshot, family: int) -> Ruleset | None:
    """The iptables dump of this family that holds kube-proxy's nat KUBE-SERVICES, if any."""
    from kubectl_proxydoctor.modes.iptables.sources import dumps

    for dump in dumps(snapshot):
        if dump.family == family and dump.ruleset.chain("nat", "KUBE-SERVICES") is not None:
            return dump.ruleset
    return None


def build_view(state: IpvsState,
               rulesets: dict[int, Ruleset | None] | None = None) -> ProgrammedView[IpvsState]:
    """The programmed view of an IPVS state (rulesets: iptables dump per family, for masquerade)."""
    view = ProgrammedView(mode="ipvs", source="ipvs", raw=state)
    for vs in state.table.services:
        if vs.fwmark is not None or vs.ip is None:
            continue  # kube-proxy never makes firewall-mark services
        frontend = frontend_for(state, vs, (rulesets or {}).get(vs.family))
        port = view.add(ProgrammedPort(frontend_name(frontend), vs.family))
        port.frontends.append(frontend)
        port.evidence.extend(frontend.evidence[:1])
    return view


def interpret(snapshot: NodeSnapshot) -> list[ProgrammedView[IpvsState]]:
    """The IPVS view of the snapshot; empty when no IPVS table (or an empty one) was captured."""
    state = read_state(snapshot)
    if state is None or not state.table.services:
        return []
    return [build_view(state, {4: nat_ruleset(snapshot, 4), 6: nat_ruleset(snapshot, 6)})]
