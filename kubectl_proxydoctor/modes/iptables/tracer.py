"""Simulate one new connection through a parsed iptables dump, like kube-proxy's tracePacket helper.

nat PREROUTING (or OUTPUT for a packet from a node address) runs every rule; the filter hooks that
follow (FORWARD / INPUT / OUTPUT, and OUTPUT then INPUT for a node's packet to itself) run the jumps
into kube-proxy's chains; nat POSTROUTING decides masquerade. ``-m statistic`` forks the packet
(probabilities multiply), ``-m recent --rcheck`` never matches (a first connection has no
history), ``--dst-type LOCAL`` uses the node's addresses.
Long chains are indexed by destination IP and port, so a trace does not scan every rule.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from kubectl_proxydoctor.gcpause import gc_paused
from kubectl_proxydoctor.model import Endpoint, Packet, TraceOutcome, TraceResult, TraceStep
from kubectl_proxydoctor.modes.iptables.parse import Rule, Ruleset
from kubectl_proxydoctor.modes.iptables.view import parse_port_name

_INDEX_MIN = 32
_MAX_DEPTH = 64
_MAX_BRANCHES = 20000
_NAMING_CHAINS = ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-EXTERNAL-SERVICES")


@dataclass
class _State:
    """One branch of the packet: where it goes, its mark, and how we got here."""

    dst: str
    port: int
    prob: float = 1.0
    mark: int = 0
    dnat: Endpoint | None = None
    masquerade: bool = False
    path: list[TraceStep] = field(default_factory=list)
    ctstates: frozenset[str] = frozenset({"NEW"})

    def fork(self, p: float) -> _State:
        return _State(self.dst, self.port, self.prob * p, self.mark, self.dnat, self.masquerade,
                      list(self.path), self.ctstates)


class _ChainIndex:
    """Rule positions of one long chain by exact destination IP and by destination port."""

    def __init__(self, rules: list[Rule]) -> None:
        self.by_dst: dict[str, list[int]] = {}
        self.by_port: dict[str, list[int]] = {}
        self.rest: list[int] = []
        for i, rule in enumerate(rules):
            dst = rule.dst
            host = bool(dst) and (dst.endswith("/32") or dst.endswith("/128") or "/" not in dst)  # type: ignore[union-attr,operator]
            if dst and host and "dst" not in rule.neg:
                self.by_dst.setdefault(_host(dst), []).append(i)
            elif rule.dport and "dport" not in rule.neg and rule.dport.isdigit() and not dst:
                self.by_port.setdefault(rule.dport, []).append(i)
            else:
                self.rest.append(i)

    def candidates(self, dst: str, port: int) -> list[int]:
        hits = self.by_dst.get(dst, []) + self.by_port.get(str(port), [])
        if not hits:
            return self.rest
        return sorted(hits + self.rest)


def _host(cidr: str) -> str:
    host = cidr.split("/", 1)[0]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


class Tracer:
    """Traces packets through one ruleset; build once, trace many (indexes are kept)."""

    def __init__(self, ruleset: Ruleset, local_addresses: set[str] | None, source: str = "iptables") -> None:
        self.rs = ruleset
        self.local = local_addresses
        self.source = source
        self._index: dict[tuple[str, str], _ChainIndex] = {}
        self._nets: dict[str, object] = {}
        self.notes: list[str] = []
        self._branches = 0

    # -- matching ---------------------------------------------------------------------------------

    def _in(self, ip: str | None, cidr: str) -> bool:
        if ip is None:
            return False
        net = self._nets.get(cidr)
        if net is None:
            try:
                net = ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                net = False
            self._nets[cidr] = net
        if net is False:
            return False
        try:
            return ipaddress.ip_address(ip) in net  # type: ignore[operator]
        except ValueError:
            return False

    def _is_local(self, ip: str | None) -> bool:
        if ip is None:
            return False
        if ip.startswith("127.") or ip == "::1":
            return True
        if self.local is None:
            self._note("node addresses unknown (no ip-addr.json): '--dst-type LOCAL' assumed to match")
            return True
        return ip in self.local

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def match(self, rule: Rule, st: _State, pkt: Packet) -> tuple[bool, float | None, str]:
        """(matches, statistic probability or None, why) for one rule and one packet branch."""
        why: list[str] = []
        neg = rule.neg
        if rule.proto:
            ok = rule.proto.lower() == pkt.protocol.lower()
            if ok == ("proto" in neg):
                return False, None, ""
        if rule.src:
            if pkt.src is None and "src" not in neg:
                self._note("source unknown: rules matching a source range (-s) were taken as not "
                           "matching; pass --src")
            ok = self._in(pkt.src, rule.src)
            if ok == ("src" in neg):
                return False, None, ""
            why.append(f"src {'!' if 'src' in neg else ''}{rule.src}")
        if rule.dst:
            ok = self._in(st.dst, rule.dst)
            if ok == ("dst" in neg):
                return False, None, ""
            why.append(f"dst {'not ' if 'dst' in neg else ''}{rule.dst}")
        if rule.dport:
            ok = _port_in(st.port, rule.dport)
            if ok == ("dport" in neg):
                return False, None, ""
            why.append(f"{pkt.protocol.lower()} dport {'!' if 'dport' in neg else ''}{rule.dport}")
        if rule.sport:
            self._note("source port unknown: rules matching --sport were taken as not matching")
            if "sport" not in neg:
                return False, None, ""
        if rule.in_iface or rule.out_iface:
            self._note("interfaces unknown: rules matching -i/-o were taken as not matching")
            if not (("in_iface" in neg) if rule.in_iface else ("out_iface" in neg)):
                return False, None, ""
        if rule.dst_type:
            ok = rule.dst_type == "LOCAL" and self._is_local(st.dst)
            if ok == ("dst_type" in neg):
                return False, None, ""
            why.append(f"dst-type {'!' if 'dst_type' in neg else ''}{rule.dst_type} ({st.dst})")
        if rule.src_type:
            ok = rule.src_type == "LOCAL" and self._is_local(pkt.src) if pkt.src else False
            if ok == ("src_type" in neg):
                return False, None, ""
            why.append(f"src-type {'!' if 'src_type' in neg else ''}{rule.src_type}")
        if rule.ctstate:
            ok = bool(set(rule.ctstate.split(",")) & st.ctstates)
            if ok == ("ctstate" in neg):
                return False, None, ""
            why.append(f"ctstate {'!' if 'ctstate' in neg else ''}{rule.ctstate}")
        if rule.mark:
            value, _, mask = rule.mark.partition("/")
            try:
                v, m = int(value, 0), int(mask or "0xffffffff", 0)
            except ValueError:
                v, m = 0, 0
            ok = (st.mark & m) == v
            if ok == ("mark" in neg):
                return False, None, ""
            why.append(f"mark {'!' if 'mark' in neg else ''}{rule.mark}")
        if rule.recent_mode in ("rcheck", "update"):
            if "recent" not in rule.neg:
                self._note("session affinity: '-m recent --rcheck' rules never match a first connection; "
                           "a returning client sticks to the endpoint it had")
                return False, None, ""
        if rule.match_sets:
            self._note("ipset contents are not read: '-m set' rules were taken as not matching")
            if not all(negated for _, _, negated in rule.match_sets):
                return False, None, ""
        if rule.unknown:
            self._note(f"unmodelled match options assumed to match: {' '.join(rule.unknown)}")
        prob = None
        if rule.probability is not None:
            prob = rule.probability
            why.append(f"statistic random p={prob:.5g}")
        if rule.comment:
            why.append(f'"{rule.comment}"')
        return True, prob, ", ".join(why) or "matches every packet"

    # -- walking ----------------------------------------------------------------------------------

    def _rules(self, table: str, chain: str, st: _State) -> list[Rule]:
        rules = self.rs.rules(table, chain)
        if len(rules) < _INDEX_MIN:
            return rules
        idx = self._index.get((table, chain))
        if idx is None:
            idx = self._index[(table, chain)] = _ChainIndex(rules)
        return [rules[i] for i in idx.candidates(st.dst, st.port)]

    def walk(self, table: str, chain: str, st: _State, pkt: Packet, depth: int = 0,
             only_kube: bool = False) -> list[tuple[_State, str | None]]:
        """Run one chain; returns (branch, verdict) with verdict None when the chain returned."""
        if depth > _MAX_DEPTH:
            self._note(f"jump depth over {_MAX_DEPTH} at {table} {chain}: loop?")
            return [(st, "drop")]
        rules = self._rules(table, chain, st)
        return self._walk_rules(table, chain, rules, 0, st, pkt, depth, only_kube)

    def _walk_rules(self, table: str, chain: str, rules: list[Rule], start: int, st: _State, pkt: Packet,
                    depth: int, only_kube: bool) -> list[tuple[_State, str | None]]:
        results: list[tuple[_State, str | None]] = []
        i = start
        while i < len(rules):
            rule = rules[i]
            i += 1
            if only_kube and not (rule.target or "").startswith("KUBE-"):
                continue
            ok, prob, why = self.match(rule, st, pkt)
            if not ok:
                continue
            self._branches += 1
            if self._branches > _MAX_BRANCHES:
                self._note("trace stopped: too many branches")
                return results + [(st, None)]
            if prob is not None and prob < 1.0:
                taken = st.fork(prob)
                st.prob *= 1.0 - prob
                for s, verdict in self._act(table, chain, rule, taken, pkt, depth, why):
                    if verdict == "continue":
                        results.extend(self._walk_rules(table, chain, rules, i, s, pkt, depth, only_kube))
                    else:
                        results.append((s, verdict))
                if st.prob <= 1e-12:
                    return results
                continue
            outcomes = self._act(table, chain, rule, st, pkt, depth, why)
            if len(outcomes) == 1 and outcomes[0][1] == "continue":
                st = outcomes[0][0]
                continue
            for s, verdict in outcomes:
                if verdict == "continue":
                    results.extend(self._walk_rules(table, chain, rules, i, s, pkt, depth, only_kube))
                else:
                    results.append((s, verdict))
            return results
        results.append((st, None))
        return results

    def _act(self, table: str, chain: str, rule: Rule, st: _State, pkt: Packet, depth: int,
             why: str) -> list[tuple[_State, str | None]]:
        """Apply a matched rule's target: "continue", None (return), or a final verdict."""
        st.path.append(TraceStep(chain=f"{table}/{chain}", rule=rule.text, why=why))
        target = rule.target
        if target is None:
            return [(st, "continue")]
        if self.rs.chain(table, target) is not None:
            out: list[tuple[_State, str | None]] = []
            for s, verdict in self.walk(table, target, st, pkt, depth + 1):
                if verdict is None:
                    out.append((s, None if rule.goto else "continue"))
                else:
                    out.append((s, verdict))
            return out
        if target == "RETURN":
            return [(st, None)]
        if target in ("ACCEPT", "DROP"):
            return [(st, target.lower())]
        if target == "REJECT":
            return [(st, "reject")]
        if target == "DNAT":
            ep = _endpoint(rule.to_destination or "")
            if ep is None:
                self._note(f"DNAT without a usable --to-destination: {rule.text}")
                return [(st, "accept")]
            st.dnat = ep
            st.dst, st.port = ep.ip, ep.port
            st.ctstates = st.ctstates | {"DNAT"}
            return [(st, "dnat")]
        if target == "MARK" and rule.mark_op:
            st.mark = _apply_mark(st.mark, *rule.mark_op)
            return [(st, "continue")]
        if target in ("MASQUERADE", "SNAT"):
            st.masquerade = True
            return [(st, "accept")]
        if target not in ("LOG", "NFLOG", "COUNTER", "CT", "CONNMARK", "TRACE", "AUDIT", "NOTRACK"):
            self._note(f"target {target} not simulated; treated as non-terminal")
        return [(st, "continue")]

    # -- the whole path ---------------------------------------------------------------------------

    def trace(self, pkt: Packet) -> TraceResult:
        """Every outcome of one new connection, with the rules on each path."""
        with gc_paused():
            return self._trace(pkt)

    def _trace(self, pkt: Packet) -> TraceResult:
        result = TraceResult(packet=pkt, mode="iptables", source=self.source)
        self.notes = []
        self._branches = 0
        dst = _host(pkt.dst)
        pkt = Packet(dst, pkt.port, pkt.protocol.upper(), _host(pkt.src) if pkt.src else None)
        local_src = pkt.src is not None and self.local is not None and pkt.src in self.local
        if pkt.src is None:
            self._note("no --src: traced as a packet arriving from outside the node (nat PREROUTING)")
        hook = "OUTPUT" if local_src else "PREROUTING"
        start = _State(dst, pkt.port)
        if self.rs.chain("nat", hook) is None:
            self._note(f"no nat {hook} chain in this dump")
            branches: list[tuple[_State, str | None]] = [(start, None)]
        else:
            branches = self.walk("nat", hook, start, pkt)
        finals: list[tuple[_State, str]] = []
        for st, verdict in branches:
            if verdict == "drop":
                finals.append((st, "drop"))
                continue
            if verdict == "reject":
                finals.append((st, "reject"))
                continue
            explicit_accept = verdict == "accept"
            st, fverdict = self._filter_and_postrouting(st, pkt, local_src)
            if fverdict in ("drop", "reject"):
                finals.append((st, fverdict))
                continue
            if st.dnat is not None:
                finals.append((st, "dnat"))
            elif explicit_accept or fverdict == "accept":
                finals.append((st, "accept"))
            else:
                finals.append((st, "no-match"))
        result.outcomes = _merge(finals, pkt.protocol)
        result.notes = list(self.notes)
        return result

    def _filter_hook(self, hook: str, st: _State, pkt: Packet) -> tuple[_State, str | None]:
        """Run the kube-proxy jumps of one filter hook; (branch, accept | drop | reject | None)."""
        if self.rs.chain("filter", hook) is None:
            return st, None
        for s2, v2 in self.walk("filter", hook, st, pkt, only_kube=True):
            return s2, v2
        return st, None

    def _filter_and_postrouting(self, st: _State, pkt: Packet, local_src: bool) -> tuple[_State, str | None]:
        """The filter hooks and nat POSTROUTING after the DNAT decision, as the kernel orders them:
        forwarded: FORWARD, POSTROUTING; to this node: INPUT; from this node: OUTPUT, POSTROUTING,
        and INPUT too when the (DNATed) destination is this node (the loopback path kube-proxy's
        tests trace for a node's own packet to its health-check NodePort)."""
        to_local = self._is_local_quiet(st.dst)
        hooks = ["OUTPUT", "INPUT"] if local_src and to_local else (
            ["OUTPUT"] if local_src else ["INPUT"] if to_local else ["FORWARD"])
        verdict = None
        for hook in hooks:
            if hook == "INPUT" and local_src:
                st = self._postrouting(st, pkt)
            st, verdict = self._filter_hook(hook, st, pkt)
            if verdict in ("drop", "reject"):
                return st, verdict
        if hooks[-1] != "INPUT":
            st = self._postrouting(st, pkt)
        return st, verdict

    def _postrouting(self, st: _State, pkt: Packet) -> _State:
        if self.rs.chain("nat", "POSTROUTING") is None:
            return st
        for s3, _v3 in self.walk("nat", "POSTROUTING", st, pkt):
            return s3
        return st

    def _is_local_quiet(self, ip: str) -> bool:
        if ip.startswith("127.") or ip == "::1":
            return True
        return self.local is not None and ip in self.local


def _merge(finals: list[tuple[_State, str]], protocol: str) -> list[TraceOutcome]:
    merged: dict[tuple, TraceOutcome] = {}
    for st, verdict in finals:
        if st.prob <= 0:
            continue
        key = (verdict, st.dnat, st.masquerade)
        out = merged.get(key)
        if out is None:
            merged[key] = TraceOutcome(verdict=verdict, destination=st.dnat if verdict == "dnat" else None,  # type: ignore[arg-type]
                                       probability=st.prob, masquerade=st.masquerade,
                                       service=_service(st.path, protocol), path=st.path)
        else:
            out.probability += st.prob
    return sorted(merged.values(), key=lambda o: (-o.probability, str(o.destination or "")))


def _service(path: list[TraceStep], protocol: str):
    for step in path:
        chain = step.chain.split("/", 1)[1]
        if chain in _NAMING_CHAINS or chain.startswith("KUBE-SVC"):
            for part in step.why.split(", "):
                if part.startswith('"') and "/" in part:
                    text = part.strip('"').split(" ", 1)[0]
                    name = parse_port_name(text, protocol)
                    if name:
                        return name
    return None


def _port_in(port: int, spec: str) -> bool:
    for part in spec.split(","):
        lo, sep, hi = part.partition(":")
        try:
            if sep:
                if int(lo or 0) <= port <= int(hi or 65535):
                    return True
            elif int(lo) == port:
                return True
        except ValueError:
            continue
    return False


def _endpoint(value: str) -> Endpoint | None:
    if value.startswith("["):
        host, _, port = value[1:].partition("]:")
    else:
        host, _, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
    try:
        return Endpoint(host, int(port)) if port else None
    except ValueError:
        return None


def _apply_mark(mark: int, op: str, value: str) -> int:
    v, _, m = value.partition("/")
    try:
        val = int(v, 0)
        mask = int(m, 0) if m else 0xFFFFFFFF
    except ValueError:
        return mark
    if op == "set-xmark":
        return (mark & ~mask) ^ val
    if op == "set-mark":
        return (mark & ~mask) | val
    if op == "xor-mark":
        return mark ^ val
    if op == "or-mark":
        return mark | val
    if op == "and-mark":
        return mark & val
    return mark
