"""Trace one new connection through the node's nftables base chains, like kube-proxy's
``nftablesTracer`` (pkg/proxy/nftables/helpers_test.go) but on the real JSON rules.

Base chains of every table of the packet's family (and ``inet``) run per hook in priority order;
``numgen random mod N vmap`` forks into every branch with probability 1/N; named-map (vmap) and
set lookups use the captured elements (so a client already in an affinity set goes to its
endpoint); ``dnat``/``masquerade`` end their chain. Expressions the tracer cannot evaluate (e.g.
iptables-nft's ``xt`` matches, interface names) make that rule not match, and say so in notes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubectl_proxydoctor.errors import ParseError
from kubectl_proxydoctor.formats.nft_model import (
    NftChain,
    NftRule,
    NftRuleset,
    NftSet,
    NftTable,
    is_ip_text,
    priority_text,
)
from kubectl_proxydoctor.formats.nft_parse import key_part, proto_name
from kubectl_proxydoctor.formats.nft_render import render_expr, render_stmt, render_verdict_or_value
from kubectl_proxydoctor.model import Endpoint, Packet, ServicePortName, TraceOutcome, TraceResult, TraceStep
from kubectl_proxydoctor.modes.nftables.interpreter import (
    load_ruleset,
    parse_chain_name,
    parse_comment_name,
    view_source,
)
from kubectl_proxydoctor.snapshot import NodeSnapshot

MAX_DEPTH = 64
MAX_BRANCHES = 4096
NOOP_STATEMENTS = {"counter", "log", "limit", "notrack", "quota", "set"}
FINAL = ("drop", "reject")


class _Unknown(Exception):
    """An expression the tracer cannot evaluate for this packet."""


@dataclass
class _State:
    src: str | None
    dst: str
    proto: str
    dport: int
    local_src: bool
    mark: int = 0
    dnat: Endpoint | None = None
    masq: bool = False
    prob: float = 1.0
    service: ServicePortName | None = None
    path: list[TraceStep] = field(default_factory=list)

    def fork(self) -> _State:
        return _State(self.src, self.dst, self.proto, self.dport, self.local_src, self.mark, self.dnat,
                      self.masq, self.prob, self.service, list(self.path))


def trace(snapshot: NodeSnapshot, packet: Packet) -> list[TraceResult]:
    """The packet through the snapshot's nftables rules, one result per matching kube-proxy table."""
    ruleset = load_ruleset(snapshot)
    if ruleset is None:
        return []
    from kubectl_proxydoctor.nodeinfo import local_addresses

    return trace_ruleset(ruleset, packet, local_addresses(snapshot))


def trace_ruleset(ruleset: NftRuleset, packet: Packet, local_addrs: set[str]) -> list[TraceResult]:
    family = "ip6" if ":" in packet.dst else "ip"
    table = ruleset.table(family, "kube-proxy")
    if table is None:
        return []
    tracer = _Tracer(ruleset, family, local_addrs | ({"127.0.0.1"} if family == "ip" else {"::1"}))
    try:
        return [tracer.run(packet, view_source(table))]
    except (TypeError, AttributeError, KeyError, ValueError, IndexError) as e:
        raise ParseError(ruleset.source, f"cannot trace through a rule of unexpected structure "
                                         f"({type(e).__name__}: {e})") from e


class _Tracer:
    def __init__(self, ruleset: NftRuleset, family: str, local_addrs: set[str]) -> None:
        self.ruleset = ruleset
        self.family = family
        self.local = local_addrs
        self.tables = [t for t in ruleset.tables.values() if t.family in (family, "inet")]
        self.notes: list[str] = []
        self.branches = 0

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def base_chains(self, hook: str) -> list[tuple[NftTable, NftChain]]:
        chains = [(t, c) for t in self.tables for c in t.base_chains(hook)]
        return sorted(chains, key=lambda tc: (tc[1].prio or 0, tc[0].name, tc[1].name))

    # -- the hooks -----------------------------------------------------------------------------

    def run(self, packet: Packet, source: str) -> TraceResult:
        proto = packet.protocol.lower()
        local_src = packet.src is not None and packet.src in self.local
        if packet.src is None:
            self.note("no source given: traced as a client off this node whose address matches no "
                      "address or range in the rules")
        start = _State(packet.src, packet.dst, proto, packet.port, local_src)
        done: list[tuple[_State, str]] = []
        for st in self.run_hook("output" if local_src else "prerouting", [start], done):
            done.extend((s, "pass") for s in self.after_routing(st, local_src, done))
        result = TraceResult(packet=packet, mode="nftables", source=source, notes=self.notes)
        for st, verdict in done:
            result.outcomes.append(_outcome(st, verdict))
        return result

    def after_routing(self, st: _State, local_src: bool, done: list[tuple[_State, str]]) -> list[_State]:
        """The hooks after the routing decision, in netfilter order: a node address is delivered
        through input (a locally generated packet leaves through postrouting first, over lo); any
        other destination goes forward (or out) and then postrouting."""
        to_node = st.dst in self.local
        if local_src:
            states = self.run_hook("postrouting", [st], done)
            return [s for s2 in states for s in self.run_hook("input", [s2], done)] if to_node else states
        if to_node:
            return self.run_hook("input", [st], done)
        return self.run_hook("postrouting", self.run_hook("forward", [st], done), done)

    def run_hook(self, hook: str, states: list[_State], done: list[tuple[_State, str]]) -> list[_State]:
        for table, chain in self.base_chains(hook):
            nxt: list[_State] = []
            for st in states:
                if chain.type == "nat" and ((hook in ("prerouting", "output") and st.dnat) or
                                            (hook == "postrouting" and st.masq)):
                    nxt.append(st)  # the connection already has its NAT binding
                    continue
                st.path.append(TraceStep(_chain_label(table, chain), f"[{chain.header()}]",
                                         f"hook {hook}, priority {chain.prio} "
                                         f"({priority_text(chain.prio, hook)})"))
                for st2, verdict in self.run_chain(table, chain, st, 0):
                    if verdict in FINAL:
                        done.append((st2, verdict))
                    elif verdict == "return" and chain.policy == "drop":
                        st2.path.append(TraceStep(_chain_label(table, chain), f"policy {chain.policy}",
                                                  "no rule accepted the packet"))
                        done.append((st2, "drop"))
                    else:
                        nxt.append(st2)
            states = nxt
        return states

    # -- chains and rules ------------------------------------------------------------------------

    def run_chain(self, table: NftTable, chain: NftChain, st: _State, depth: int) -> list[tuple[_State, str]]:
        if depth > MAX_DEPTH:
            self.note(f"chain depth over {MAX_DEPTH} at {chain.name}: stopped")
            return [(st, "return")]
        if st.service is None and (cname := parse_chain_name(chain.name)) is not None:
            st.service = cname.name
        return self.run_rules(table, chain, 0, st, depth)

    def run_rules(self, table: NftTable, chain: NftChain, start: int, st: _State,
                  depth: int) -> list[tuple[_State, str]]:
        out: list[tuple[_State, str]] = []
        for i in range(start, len(chain.rules)):
            results = self.run_rule(table, chain, chain.rules[i], st, depth)
            if len(results) == 1 and results[0][1] == "next":
                st = results[0][0]
                continue
            for st2, verdict in results:
                if verdict == "next":
                    out.extend(self.run_rules(table, chain, i + 1, st2, depth))
                else:
                    out.append((st2, verdict))
            return out
        return [(st, "return")]

    def run_rule(self, table: NftTable, chain: NftChain, rule: NftRule, st: _State,
                 depth: int) -> list[tuple[_State, str]]:
        why: list[str] = []
        label = _chain_label(table, chain)
        for stmt in rule.expr:
            kind = next(iter(stmt))
            body = stmt[kind]
            try:
                if kind == "match":
                    ok, detail = self.match(table, body, st)
                    if not ok:
                        return [(st, "next")]
                    why.append(detail)
                    continue
                if kind == "mangle":
                    self.mangle(body, st)
                    why.append(f"{render_stmt(stmt)} (mark now 0x{st.mark:x})")
                    continue
                if kind == "set" and isinstance(body, dict):
                    why.append(f"{body.get('op')} {body.get('set')}: this source is remembered for session "
                               "affinity")
                    continue
                if kind in NOOP_STATEMENTS:
                    continue
                if kind == "xt" and isinstance(body, dict) and body.get("type") == "match":
                    raise _Unknown(f"iptables-nft xt match {body.get('name')}")
                if kind == "vmap":
                    return self.vmap(table, chain, rule, body, st, depth, why)
                if kind == "dnat":
                    return self.dnat(table, chain, rule, body, st, why)
                if kind == "masquerade":
                    st.masq = True
                    st.path.append(TraceStep(label, rule.text, _why(why, "masquerade")))
                    return [(st, "accept")]
            except _Unknown as e:
                self.note(f"{label}: cannot evaluate '{rule.text}' ({e}); treated as not matching")
                return [(st, "next")]
            if kind in ("jump", "goto", "return", "accept", "drop", "reject", "continue"):
                st.path.append(TraceStep(label, rule.text, _why(why, render_stmt(stmt))))
                return self.verdict(table, stmt, st, depth)
            self.note(f"{label}: statement {render_stmt(stmt)} in '{rule.text}' is not modelled; "
                      "ignored")
        if why or rule.expr:
            st.path.append(TraceStep(label, rule.text, "; ".join(why) if why else "unconditional"))
        return [(st, "next")]

    def verdict(self, table: NftTable, verdict: dict, st: _State, depth: int) -> list[tuple[_State, str]]:
        kind = next(iter(verdict))
        if kind in ("jump", "goto"):
            target = verdict[kind].get("target")
            chain = table.chains.get(target)
            if chain is None:
                self.note(f"{kind} to missing chain {target} in {table.label}")
                return [(st, "drop")]
            results = self.run_chain(table, chain, st, depth + 1)
            out = []
            for st2, v in results:
                if v == "return":
                    out.append((st2, "next" if kind == "jump" else "return"))
                else:
                    out.append((st2, v))
            return out
        if kind == "return":
            return [(st, "return")]
        if kind == "continue":
            return [(st, "next")]
        return [(st, kind)]  # accept, drop, reject

    def dnat(self, table: NftTable, chain: NftChain, rule: NftRule, body: dict, st: _State,
             why: list[str]) -> list[tuple[_State, str]]:
        """``dnat to ip:port``, ``dnat ip addr . port to ip . port``, or (kube-proxy v1.36+)
        ``dnat ip to numgen random mod N map { i : ip . port }``: every branch with its share."""
        label = _chain_label(table, chain)
        addr = body.get("addr")
        mapping = addr.get("map") if isinstance(addr, dict) else None
        if not isinstance(mapping, dict):
            if isinstance(addr, dict) and "concat" in addr:
                ip, port = addr["concat"]
            else:
                ip, port = addr, body.get("port", st.dport)
            return [_dnat_to(st, Endpoint(str(ip), int(port)), label, rule, why, "DNAT to @EP@")]
        key, data = mapping.get("key"), mapping.get("data")
        if isinstance(key, dict) and "numgen" in key:
            mod = int(key["numgen"].get("mod") or 0)
            entries = _anon_entries(data)
            out = []
            for st2, value, picked in self._numgen_branches(label, "map", mod, entries, st):
                ip, port = _concat_value(value, st.dport)
                out.append(_dnat_to(st2, Endpoint(ip, port), label, rule, why, picked + ": DNAT to @EP@"))
            out.extend(self._numgen_missing(label, rule, mod, entries, st, "map entry",
                                            "the map lookup fails and the rule does not match"))
            return out
        value = self.value(key, st)
        for entry_key, entry in _anon_entries_any(data):
            if _key_matches(entry_key, value):
                ip, port = _concat_value(entry, st.dport)
                return [_dnat_to(st, Endpoint(ip, port), label, rule, why,
                                 f"{render_expr(key)} matched {render_expr(entry_key)}: DNAT to @EP@")]
        raise _Unknown(f"DNAT map {render_expr(data)} has no entry for {value}")

    def _numgen_branches(self, label: str, what: str, mod: int, entries: list, st: _State):
        """One (state, entry value, "numgen picked n of mod (p=...)") per entry of a numgen map or
        vmap, each with its 1/mod share; a modulus that does not match the entries is noted."""
        if mod != len(entries):
            self.note(f"{label}: numgen mod {mod} but {len(entries)} {what} entries")
        for n, value in entries:
            self.branches += 1
            if self.branches > MAX_BRANCHES:
                self.note(f"more than {MAX_BRANCHES} branches: trace cut short")
                return
            st2 = st.fork()
            st2.prob *= (1.0 / mod) if mod else 0.0
            yield st2, value, f"numgen picked {n} of {mod} (p={1 / mod if mod else 0:.3g})"

    @staticmethod
    def _numgen_missing(label: str, rule: NftRule, mod: int, entries: list, st: _State, what: str,
                        then: str, sep: str = "): ") -> list[tuple[_State, str]]:
        """The share of numgen values no entry covers: they go on to the next rule."""
        missing = mod - len({n for n, _ in entries if 0 <= n < mod})
        if not mod or missing <= 0:
            return []
        st2 = st.fork()
        st2.prob *= missing / mod
        text = f"numgen values with no {what} ({missing} of {mod}{sep}{then}"
        st2.path.append(TraceStep(label, rule.text, text))
        return [(st2, "next")]

    def vmap(self, table: NftTable, chain: NftChain, rule: NftRule, body: dict, st: _State, depth: int,
             why: list[str]) -> list[tuple[_State, str]]:
        label = _chain_label(table, chain)
        key = body.get("key")
        data = body.get("data")
        if isinstance(key, dict) and "numgen" in key:
            entries = _anon_entries(data)
            mod = int(key["numgen"].get("mod") or 0)
            out = []
            for st2, verdict, picked in self._numgen_branches(label, "vmap", mod, entries, st):
                st2.path.append(TraceStep(label, rule.text, _why(
                    why, f"{picked}: {render_verdict_or_value(verdict)}")))
                out.extend(self.verdict(table, verdict, st2, depth))
            out.extend(self._numgen_missing(label, rule, mod, entries, st, "vmap entry", "fall through",
                                            sep=") "))
            return out
        value = self.value(key, st)
        if isinstance(data, str) and data.startswith("@"):
            nset = self._set(table, data)
            el = nset.lookup(value if isinstance(value, tuple) else (value,))
            shown = " . ".join(str(v) for v in (value if isinstance(value, tuple) else (value,)))
            if el is None:
                return [(st, "next")]
            if st.service is None and el.comment:
                st.service = parse_comment_name(el.comment, st.proto)
            st.path.append(TraceStep(label, rule.text, _why(
                why, f"{render_expr(key)} = {shown} found in {data}: {el.text()}")))
            return self.verdict(table, el.value, st, depth)
        for entry_key, verdict in _anon_entries_any(data):
            if _key_matches(entry_key, value):
                st.path.append(TraceStep(label, rule.text, _why(why, f"{render_expr(key)} matched "
                                                                     f"{render_expr(entry_key)}")))
                return self.verdict(table, verdict, st, depth)
        return [(st, "next")]

    # -- expressions -----------------------------------------------------------------------------

    def _set(self, table: NftTable, ref: str) -> NftSet:
        nset = table.sets.get(ref[1:])
        if nset is None:
            raise _Unknown(f"set {ref} does not exist")
        return nset

    def value(self, expr: Any, st: _State) -> Any:
        """The packet's value of a left-hand expression."""
        if isinstance(expr, dict):
            kind, body = next(iter(expr.items()))
            if kind == "payload":
                proto, fld = body.get("protocol"), body.get("field")
                if fld in ("saddr", "daddr") and proto in ("ip", "ip6"):
                    if proto != self.family:
                        raise _Unknown(f"{proto} header on a {self.family} packet")
                    if fld == "saddr":
                        if st.src is None:
                            raise _NoSource()
                        return st.src
                    return st.dst
                if fld == "dport" and proto in ("th", "tcp", "udp", "sctp"):
                    if proto != "th" and proto != st.proto:
                        return _Mismatch()
                    return st.dport
                raise _Unknown(f"{proto} {fld}")
            if kind == "meta":
                key = body.get("key")
                if key == "l4proto":
                    return st.proto
                if key == "mark":
                    return st.mark
                if key == "nfproto":
                    return "ipv4" if self.family == "ip" else "ipv6"
                raise _Unknown(f"meta {key}")
            if kind == "ct":
                if body.get("key") == "state":
                    return "new"
                if body.get("key") == "status":  # of the new connection: only NAT bindings so far
                    return _CtStatus(frozenset({"dnat"} if st.dnat else set()))
                raise _Unknown(f"ct {body.get('key')}")
            if kind == "fib":
                flags = body.get("flags") or []
                flags = [flags] if isinstance(flags, str) else flags
                if body.get("result") == "type" and flags in (["saddr"], ["daddr"]):
                    if flags == ["saddr"]:
                        if st.src is None:
                            return "unicast"
                        return "local" if st.local_src or st.src in self.local else "unicast"
                    return "local" if st.dst in self.local else "unicast"
                raise _Unknown(render_expr(expr))
            if kind == "concat":
                return tuple(self.value(e, st) for e in body)
            if kind in ("&", "|", "^"):
                left, right = body
                lv = self.value(left, st)
                if not isinstance(lv, int) or not isinstance(right, int):
                    raise _Unknown(render_expr(expr))
                return {"&": lv & right, "|": lv | right, "^": lv ^ right}[kind]
        raise _Unknown(render_expr(expr))

    def match(self, table: NftTable, body: dict, st: _State) -> tuple[bool, str]:
        op = body.get("op", "==")
        left, right = body.get("left"), body.get("right")
        shown = f"{render_expr(left)} {'' if op in ('==', 'in') else op + ' '}{render_expr(right)}"
        try:
            value = self.value(left, st)
        except _NoSource:
            return (op == "!=", f"{shown} (unknown source)")
        if isinstance(value, _Mismatch):
            return (op == "!=", shown)
        if isinstance(value, _CtStatus):
            flags = {right} if isinstance(right, str) else set(right if isinstance(right, list) else [])
            hit = bool(flags) and flags <= value.flags
            return (hit if op in ("==", "in") else not hit,
                    f"{shown} ({'the connection is DNATed' if 'dnat' in value.flags else 'no DNAT'})")
        if op in ("==", "in"):
            hit = self.contains(table, right, value)
        elif op == "!=":
            hit = not self.contains(table, right, value)
        else:
            raise _Unknown(f"operator {op}")
        if isinstance(right, str) and right.startswith("@"):
            shown_value = " . ".join(map(str, value)) if isinstance(value, tuple) else str(value)
            member = "is in" if hit != (op == "!=") else "is not in"
            shown = f"{render_expr(left)} {shown_value} {member} {right}"
        return hit, shown

    def contains(self, table: NftTable, right: Any, value: Any) -> bool:
        """Whether the packet value equals / falls in the right-hand side."""
        if isinstance(right, str) and right.startswith("@"):
            nset = self._set(table, right)
            return nset.lookup(value if isinstance(value, tuple) else (value,)) is not None
        if isinstance(right, dict) and "set" in right:
            return any(_key_matches(item, value) for item in right["set"])
        if isinstance(right, list):  # ct state { established, related }
            return any(_key_matches(item, value) for item in right)
        return _key_matches(right, value)

    def mangle(self, body: dict, st: _State) -> None:
        key = body.get("key")
        if isinstance(key, dict) and key.get("meta", {}).get("key") == "mark":
            raw = body.get("value")
            val = self.value(raw, st) if isinstance(raw, dict) else raw
            if not isinstance(val, int):
                raise _Unknown(f"mark value {body.get('value')!r}")
            st.mark = val
            return
        raise _Unknown(f"mangle {render_expr(key)}")


class _NoSource(Exception):
    """The packet has no source address to compare."""


class _Mismatch:
    """A transport header the packet does not have (``tcp dport`` on a UDP packet)."""


@dataclass(frozen=True)
class _CtStatus:
    """``ct status`` of the traced connection (which NAT bindings it has)."""

    flags: frozenset[str]


def _dnat_to(st: _State, ep: Endpoint, label: str, rule: NftRule, why: list[str],
             last: str) -> tuple[_State, str]:
    """Bind the connection's DNAT to ``ep`` (``last`` says why, with ``@EP@`` for the endpoint)."""
    st.dnat = ep
    st.dst, st.dport = ep.ip, ep.port
    st.path.append(TraceStep(label, rule.text, _why(why, last.replace("@EP@", str(ep)))))
    return (st, "accept")


def _concat_value(value: Any, default_port: int) -> tuple[str, int]:
    """``ip . port`` map data (or a bare address) as (ip, port)."""
    if isinstance(value, dict) and isinstance(value.get("concat"), list) and len(value["concat"]) == 2:
        ip, port = value["concat"]
        return str(ip), int(port)
    return str(value), default_port


def _key_matches(pattern: Any, value: Any) -> bool:
    from kubectl_proxydoctor.formats.nft_model import part_matches

    if isinstance(pattern, dict) and "concat" in pattern:
        parts = pattern["concat"]
        return isinstance(value, tuple) and len(parts) == len(value) and all(
            _key_matches(p, v) for p, v in zip(parts, value, strict=True))
    if isinstance(pattern, dict) and "elem" in pattern:
        return _key_matches(pattern["elem"].get("val"), value)
    try:
        part = key_part(pattern)
    except Exception as e:  # noqa: BLE001 - an unreadable value never matches, but is reported
        raise _Unknown(f"value {render_expr(pattern)}") from e
    if isinstance(value, str) and isinstance(part, str) and not is_ip_text(value):
        return proto_name(part) == proto_name(value)
    return part_matches(part, value)



def _anon_entries(data: Any) -> list[tuple[int, dict]]:
    return [(k, v) for k, v in _anon_entries_any(data) if isinstance(k, int)]


def _anon_entries_any(data: Any) -> list[tuple[Any, dict]]:
    items = data.get("set") if isinstance(data, dict) else None
    return [(item[0], item[1]) for item in items or [] if isinstance(item, list) and len(item) == 2]


def _chain_label(table: NftTable, chain: NftChain) -> str:
    return f"{table.family} {table.name} {chain.name}"


def _why(parts: list[str], last: str) -> str:
    return "; ".join([*parts, last]) if parts else last


def _outcome(st: _State, verdict: str) -> TraceOutcome:
    if verdict in FINAL:
        kind = verdict
    elif st.dnat is not None:
        kind = "dnat"
    elif verdict == "accept":
        kind = "accept"
    else:
        kind = "no-match"
    return TraceOutcome(verdict=kind, destination=st.dnat, probability=st.prob, masquerade=st.masq,  # type: ignore[arg-type]
                        service=st.service, path=st.path)
