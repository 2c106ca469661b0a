"""Read kube-proxy's iptables layout (pkg/proxy/iptables/proxier.go) into the programmed view.

nat KUBE-SERVICES has one rule per frontend (cluster IP -> KUBE-SVC/SVL, external IP -> KUBE-EXT,
load-balancer IP -> KUBE-FW or KUBE-EXT), KUBE-NODEPORTS one per NodePort (-> KUBE-EXT); the
filter table holds REJECT ("has no endpoints") and DROP ("has no local endpoints") rules.
Service ports are named by the frontend rules' comments (always written) and, where a comment is
missing, by recomputing kube-proxy's chain-name hash from names seen elsewhere in the dump.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kubectl_proxydoctor.gcpause import gc_paused
from kubectl_proxydoctor.model import (
    Endpoint,
    Frontend,
    ProgrammedPort,
    ProgrammedView,
    ServicePortName,
    Target,
)
from kubectl_proxydoctor.modes.iptables import hashes, layout
from kubectl_proxydoctor.modes.iptables.parse import PLAIN_SRC, Rule, Ruleset

MARK_MASQ = "KUBE-MARK-MASQ"
_KIND_SUFFIX = {
    " cluster IP": "cluster-ip", " external IP": "external-ip", " loadbalancer IP": "load-balancer",
}
_NO_ENDPOINTS = {" has no endpoints": "reject", " has no local endpoints": "drop"}
SERVICE_CHAIN_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-")
HAIRPIN_ONLY = "only hairpin traffic (an endpoint reaching itself)"
_UNSEEN = object()


def parse_port_name(text: str, protocol: str) -> ServicePortName | None:
    """``ns/name:port`` (or ``ns/name`` for an unnamed port) into a ServicePortName."""
    ns, slash, rest = text.partition("/")
    if not slash or not ns or not rest or " " in text:
        return None
    name, _, port = rest.partition(":")
    return ServicePortName(ns, name, port, protocol.upper())


def port_name_string(name: ServicePortName) -> str:
    return hashes.port_name_string(name.namespace, name.name, name.port)


def split_endpoint(value: str) -> Endpoint | None:
    """``ip:port`` or ``[ip6]:port`` (a DNAT --to-destination) as an Endpoint; None if not one."""
    return _split_endpoint(value)


_PORTS: dict[str, int] = {}  # port text -> its int, one shared int per port (100k endpoints, few ports)


def _split_endpoint(value: str) -> Endpoint | None:
    if value.startswith("["):
        host, _, port = value[1:].partition("]:")
    else:
        host, _, port = value.rpartition(":")
    number = _PORTS.get(port)
    if number is None:
        try:
            number = int(port)
        except ValueError:
            return None
        if len(_PORTS) < 70000:
            _PORTS[port] = number
    return Endpoint(host, number)


def _ip(cidr: str | None) -> str | None:
    if cidr is None:
        return None
    ip, _, plen = cidr.partition("/")
    return ip if plen in ("", "32", "128") else cidr


@dataclass
class ChainTargets:
    """Where new connections entering one chain end up (probabilities relative to the chain)."""

    targets: list[Target] = field(default_factory=list)
    masquerade: list[tuple[str, str | None]] = field(default_factory=list)  # (when, only for -d)
    affinity_seconds: int | None = None
    evidence: list[str] = field(default_factory=list)
    policy_chain: str | None = None  # for KUBE-EXT: the chain external traffic falls through to


class Interpreter:
    """Builds one ProgrammedView from one parsed ruleset (one backend, one family)."""

    def __init__(self, ruleset: Ruleset, source: str) -> None:
        self.rs = ruleset
        self.source = source
        self.family = ruleset.family
        self.nat = ruleset.tables.get("nat")
        self.filter = ruleset.tables.get("filter")
        self._cache: dict[str, ChainTargets] = {}
        self._seps: dict[str, tuple[Endpoint, str] | None] = {}
        self.view = ProgrammedView(mode="iptables", source=source, raw=ruleset)

    # -- naming -----------------------------------------------------------------------------------

    def name_for_chain(self, chain: str, protocol: str | None = None) -> ServicePortName | None:
        """The service port a KUBE-SVC/SVL/EXT/FW chain belongs to, by its hash."""
        return chain_owner(self.rs, chain, protocol)

    def _rule_name(self, rule: Rule, suffixes: dict[str, str]) -> tuple[ServicePortName | None, str | None]:
        proto = (rule.proto or "tcp").upper()
        if rule.comment:
            for suffix, kind in suffixes.items():
                if rule.comment.endswith(suffix):
                    return parse_port_name(rule.comment[: -len(suffix)], proto), kind
        return None, None

    # -- chain resolution -------------------------------------------------------------------------

    def resolve(self, chain_name: str, depth: int = 0) -> ChainTargets:
        """Walk a KUBE-SVC/SVL/EXT/FW chain down to its DNAT endpoints, multiplying probabilities."""
        cached = self._cache.get(chain_name)
        if cached is not None:
            return cached
        out = ChainTargets()
        chain = self.nat.chains.get(chain_name) if self.nat else None
        if chain is None or depth > 8:
            self._cache[chain_name] = out
            return out
        remaining = 1.0
        chains = self.nat.chains if self.nat else {}
        evidence = out.evidence
        targets = out.targets
        fw_chain = chain_name.startswith("KUBE-FW-")
        rule_targets = chain.targets
        probabilities = chain.probabilities or {}
        # no plain "-s" rule here: a plain rule that is not a DNAT is an unconditional (statistic) jump
        plain_jumps = not chain.shapes & PLAIN_SRC and not fw_chain
        for i, item in enumerate(chain.items):
            target = rule_targets[i]
            if plain_jumps and isinstance(item, str) and target != "DNAT" and target in chains \
                    and target.startswith("KUBE-SEP"):  # the common case below, without the words
                evidence.append(item)
                remaining = self._endpoint_jump(targets, target, item, probabilities.get(i), remaining)
                continue
            if isinstance(item, str):  # a plain rule (parse._plain): its few fields from its words
                text = item
                rule: Rule | None = None
                src = to_destination = None
                probability = probabilities.get(i)
                if probability is None:
                    words = text.split()
                    if len(words) == 10:
                        to_destination = words[9]
                    elif len(words) == 6:
                        src = words[3]
                src_negated = False
                recent_mode = None
                conditional = src is not None
            else:
                rule = item
                text = rule.text
                src, to_destination, probability = rule.src, rule.to_destination, rule.probability
                src_negated = "src" in rule.neg
                recent_mode = rule.recent_mode
                conditional = _conditional(rule)
            evidence.append(text)
            if target == MARK_MASQ:
                if rule is None:
                    out.masquerade.append((f"source in {src}" if src else "always", None))
                else:
                    out.masquerade.append((_masq_condition(rule), _ip(rule.dst) if rule.dst else None))
                continue
            if target == "DNAT" and to_destination:
                ep = _split_endpoint(to_destination)
                if ep is not None and remaining > 0:
                    p = remaining * (probability if probability is not None else 1.0)
                    targets.append(Target(ep, p, evidence=[text]))
                    if probability is None:
                        remaining = 0.0
                    else:
                        remaining -= p
                continue
            if not target or target not in chains:
                continue
            if target.startswith("KUBE-SEP") and recent_mode is None and not src \
                    and not fw_chain and not conditional:
                # the common case: a (statistic) jump to an endpoint chain
                remaining = self._endpoint_jump(targets, target, text, probability, remaining)
                continue
            if recent_mode == "rcheck":
                out.affinity_seconds = rule.recent_seconds if rule is not None else None
                continue
            if fw_chain and src and not src_negated:
                # loadBalancerSourceRanges: every allowed range jumps to the same chain
                if not out.targets:
                    sub = self.resolve(target, depth + 1)
                    out.policy_chain = sub.policy_chain or target
                    out.targets = [Target(t.endpoint, t.probability, evidence=[text, *t.evidence])
                                   for t in sub.targets]
                    out.masquerade.extend(sub.masquerade)
                    out.affinity_seconds = sub.affinity_seconds
                    out.evidence.extend(sub.evidence)
                continue
            if conditional:
                continue  # e.g. KUBE-EXT short-circuits for pod / node traffic
            if remaining <= 0:
                continue
            p = remaining * (probability if probability is not None else 1.0)
            if target.startswith("KUBE-SEP-") or target.startswith("KUBE-SEP"):
                sep = self._endpoint_chain(target)
                if sep is not None:
                    out.targets.append(Target(sep[0], p, None, [text, sep[1]]))
            else:
                sub = self.resolve(target, depth + 1)
                if chain_name.startswith("KUBE-EXT-") or fw_chain:
                    out.policy_chain = sub.policy_chain or target
                for t in sub.targets:
                    out.targets.append(Target(t.endpoint, p * t.probability, None, [text, *t.evidence]))
                out.masquerade.extend(sub.masquerade)
                if sub.affinity_seconds is not None:
                    out.affinity_seconds = sub.affinity_seconds
                out.evidence.extend(sub.evidence)
            if probability is None:
                remaining = 0.0
            else:
                remaining -= p
        self._cache[chain_name] = out
        return out

    def _endpoint_jump(self, targets: list[Target], chain: str, text: str, probability: float | None,
                       remaining: float) -> float:
        """A (statistic) jump to endpoint chain ``chain``: its Target takes ``probability`` of what
        is still ``remaining`` of new connections (all of it without one); returns what is left."""
        if remaining <= 0:
            return remaining
        p = remaining * (probability if probability is not None else 1.0)
        sep = self._endpoint_chain(chain)
        if sep is not None:
            targets.append(Target(sep[0], p, None, [text, sep[1]]))
        return 0.0 if probability is None else remaining - p

    def _endpoint_chain(self, name: str) -> tuple[Endpoint, str] | None:
        """The DNAT destination of a KUBE-SEP chain and its rule (cached: one Endpoint per chain)."""
        found = self._seps.get(name, _UNSEEN)
        if found is not _UNSEEN:
            return found  # type: ignore[return-value]
        found = None
        chain = self.nat.chains.get(name) if self.nat else None
        if chain is not None:
            items = chain.items
            targets = chain.targets
            i = -1
            while True:
                try:
                    i = targets.index("DNAT", i + 1)  # (a C-level scan)
                except ValueError:
                    break
                item = items[i]
                to_destination: str | None
                if isinstance(item, str):  # a plain DNAT: the destination is its last word
                    text, to_destination = item, item.rsplit(None, 1)[1]
                else:
                    text, to_destination = item.text, item.to_destination
                if to_destination:
                    ep = _split_endpoint(to_destination)
                    if ep is not None:
                        found = (ep, text)
                        break
        self._seps[name] = found
        return found

    # -- building the view --------------------------------------------------------------------------

    def _port(self, name: ServicePortName) -> ProgrammedPort:
        return self.view.add(ProgrammedPort(name, self.family))

    def _frontend(self, name: ServicePortName, kind: str, ip: str | None, port: int, rule: Rule) -> Frontend:
        pp = self._port(name)
        for fe in pp.frontends:
            if fe.kind == kind and fe.ip == ip and fe.port == port:
                return fe
        fe = Frontend(kind=kind, ip=ip, port=port, protocol=name.protocol)  # type: ignore[arg-type]
        pp.frontends.append(fe)
        return fe

    def _fill(self, fe: Frontend, jump_rule: Rule) -> None:
        target = jump_rule.target or ""
        filled = bool(fe.evidence)
        fe.evidence.append(jump_rule.text)
        if filled:  # a second rule for the same frontend (localhost NodePort copy): same chain
            return
        resolved = self.resolve(target)
        fe.evidence.extend(resolved.evidence)
        fe.targets = list(resolved.targets)  # the chain's Targets, shared by its frontends (read-only)
        fe.affinity_seconds = resolved.affinity_seconds
        conditions = [text for text, dst in resolved.masquerade if dst is None or dst == fe.ip]
        fe.masquerade = "; ".join(dict.fromkeys(conditions)) or HAIRPIN_ONLY
        policy_chain = resolved.policy_chain if target.startswith(("KUBE-EXT-", "KUBE-FW-")) else target
        if policy_chain and policy_chain.startswith("KUBE-SVL-"):
            fe.policy = "local"
        if target.startswith("KUBE-FW-"):
            fw = self.nat.chains.get(target) if self.nat else None
            rules = fw.rules if fw else []
            fe.source_ranges = [r.src for r in rules if r.src and r.target and "src" not in r.neg]

    def build(self) -> ProgrammedView:
        for rule in self.rs.rules("nat", "KUBE-SERVICES"):
            self._service_rule(rule)
        for rule in self.rs.rules("nat", "KUBE-NODEPORTS"):
            self._nodeport_rule(rule)
        if self.filter is not None:
            for chain in ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES"):
                for rule in self.filter.chains[chain].rules if chain in self.filter.chains else []:
                    self._filter_rule(rule)
        self.view.unknown_layout = layout.mark_unknown(self.view, self.rs)
        for pp in self.view.ports.values():
            pp.frontends.sort(key=_frontend_order)
        return self.view

    def _service_rule(self, rule: Rule) -> None:
        target = rule.target or ""
        if not target.startswith(SERVICE_CHAIN_PREFIXES) or not rule.dport or rule.neg:
            return
        name, kind = self._rule_name(rule, _KIND_SUFFIX)
        if name is None:
            name = self.name_for_chain(target, rule.proto)
            if name is None:
                return
            kind = "load-balancer" if target.startswith("KUBE-FW-") else (
                "external-ip" if target.startswith("KUBE-EXT-") else "cluster-ip")
        try:
            port = int(rule.dport)
        except ValueError:
            return
        fe = self._frontend(name, kind or "cluster-ip", _ip(rule.dst), port, rule)
        self._fill(fe, rule)

    def _nodeport_rule(self, rule: Rule) -> None:
        target = rule.target or ""
        if not target.startswith(SERVICE_CHAIN_PREFIXES) or not rule.dport:
            return
        proto = (rule.proto or "tcp").upper()
        name = parse_port_name(rule.comment, proto) if rule.comment else None
        if name is None:
            name = self.name_for_chain(target, proto)
            if name is None:
                return
        try:
            port = int(rule.dport)
        except ValueError:
            return
        # kube-proxy >= 1.28 adds a 127.0.0.0/8 copy (localhost NodePorts, nfacct-counted): same frontend
        ip = None if rule.dst is None or rule.dst.startswith("127.") else _ip(rule.dst)
        fe = self._frontend(name, "node-port", ip, port, rule)
        self._fill(fe, rule)

    def _filter_rule(self, rule: Rule) -> None:
        if rule.target not in ("REJECT", "DROP") or not rule.dport:
            return
        name, verdict = self._rule_name(rule, _NO_ENDPOINTS)
        if name is None:
            return
        try:
            port = int(rule.dport)
        except ValueError:
            return
        if rule.dst_type == "LOCAL" and not rule.dst:
            kind, ip = "node-port", None
        elif rule.chain == "KUBE-SERVICES":
            kind, ip = "cluster-ip", _ip(rule.dst)
        else:
            ip = _ip(rule.dst)
            kind = "external-ip"
            pp = self.view.port(name, self.family)
            for fe in pp.frontends if pp else []:
                if fe.ip == ip and fe.kind == "load-balancer":
                    kind = "load-balancer"
        fe = self._frontend(name, kind, ip, port, rule)
        fe.no_endpoints = verdict
        fe.evidence.append(rule.text)


def _conditional(rule: Rule) -> bool:
    """A jump that only some new connections take (beyond statistic / recent / protocol)."""
    return bool(rule.src or rule.dst or rule.src_type or rule.dst_type or rule.in_iface
                or rule.out_iface or rule.match_sets or rule.mark or rule.ctstate or rule.unknown)


def _masq_condition(rule: Rule) -> str:
    if rule.src:
        return f"source {'not ' if 'src' in rule.neg else ''}in {rule.src}"
    if rule.src_type:
        return f"source address type {'not ' if 'src_type' in rule.neg else ''}{rule.src_type}"
    if rule.comment and rule.comment.startswith("masquerade traffic for"):
        return "always (external traffic)"
    return "always"


def _frontend_order(fe: Frontend) -> tuple:
    order = {"cluster-ip": 0, "external-ip": 1, "load-balancer": 2, "node-port": 3}
    return order[fe.kind], fe.ip or "", fe.port


def hash_index(rs: Ruleset) -> dict[str, ServicePortName]:
    """portProtoHash -> service port, for every service port named by any comment (computed once per
    parsed dump, kept on it)."""
    if rs.port_hashes is None:
        names: dict[str, ServicePortName] = {}
        seen: set[tuple[str, str]] = set()
        # plain rules (kept as text, parse._plain) have no comment: only the parsed ones are read,
        # so naming one chain does not build a big node's Rules
        parsed = (item for table in rs.tables.values() for chain in table.chains.values() if chain.parsed
                  for item in chain.items if not isinstance(item, str))
        for rule in parsed:
            if not rule.comment or "/" not in rule.comment:
                continue
            text = rule.comment.split(" ", 1)[0]
            proto = rule.proto or "tcp"
            if (text, proto) in seen:
                continue
            seen.add((text, proto))
            name = parse_port_name(text, proto)
            if name:
                names[hashes.port_proto_hash(port_name_string(name), proto)] = name
        rs.port_hashes = names
    return rs.port_hashes


def chain_owner(rs: Ruleset, chain: str, protocol: str | None = None) -> ServicePortName | None:
    """The service port a KUBE-SVC/SVL/EXT/FW chain of this dump belongs to, by its hash."""
    for prefix in SERVICE_CHAIN_PREFIXES:
        if chain.startswith(prefix):
            name = hash_index(rs).get(chain[len(prefix):])
            if name and (protocol is None or name.protocol == protocol.upper()):
                return name
    return None


def interpret_ruleset(ruleset: Ruleset, source: str) -> ProgrammedView:
    """The programmed view of one parsed dump."""
    with gc_paused():
        return Interpreter(ruleset, source).build()
