"""kube-proxy's nftables layout (pkg/proxy/nftables/proxier.go) into the programmed view.

Frontends come from the dispatch maps (``service-ips``, ``service-nodeports``,
``no-endpoint-services``, ``no-endpoint-nodeports``, ``firewall-ips``); service ports are named by
kube-proxy's chain names (``service-HASH-ns/svc/proto/port``) or, for no-endpoint elements, by the
element comment (``ns/svc:port``); endpoints come from the ``dnat to`` rule of each
``endpoint-HASH-...__ip/port`` chain reached through ``numgen random mod N vmap {...}``, or (v1.36+)
from the service chain's own ``dnat ip to numgen random mod N map { i : ip . port }``. What each
generation writes is in layout.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kubectl_proxydoctor.errors import ParseError
from kubectl_proxydoctor.formats.nft_model import (
    NftChain,
    NftElement,
    NftRule,
    NftRuleset,
    NftTable,
)
from kubectl_proxydoctor.formats.nft_parse import (
    FILENAME,
    RULESET_KEY,
    parse_ruleset_text,
    proto_name,
    register_live_chain_hook,
)
from kubectl_proxydoctor.gcpause import gc_paused
from kubectl_proxydoctor.model import (
    Endpoint,
    Frontend,
    ProgrammedPort,
    ProgrammedView,
    ServicePortName,
    Target,
)
from kubectl_proxydoctor.modes.nftables.layout import (  # noqa: F401 - names re-exported
    CHAIN_RE,
    CLUSTER_IPS,
    COMMENT_RE,
    FIREWALL_IPS,
    KUBE_PROXY_MARKERS,
    MASQ_CHAIN,
    NO_ENDPOINT_NODEPORTS,
    NO_ENDPOINT_SERVICES,
    SERVICE_IPS,
    SERVICE_NODEPORTS,
    ChainName,
    chain_hash,
    dnat_endpoint,
    dnat_numgen_map,
    dnat_statement,
    marks_masquerade,
    numgen_problem,
    numgen_vmap,
    parse_chain_name,
    rule_targets,
    unknown_rule,
    verdict_chain,
)
from kubectl_proxydoctor.snapshot import NodeSnapshot

MAX_DEPTH = 32
UNKNOWN = "unknown layout: "  # a walk's problem that is not drift: the layout is not understood


def parse_comment_name(comment: str | None, protocol: str) -> ServicePortName | None:
    """``ns/svc:port`` (kube-proxy's ServicePortName string) from an element comment."""
    if not comment:
        return None
    m = COMMENT_RE.match(comment.strip())
    if not m:
        return None
    return ServicePortName(m["ns"], m["svc"], m["port"] or "", protocol.upper())


@dataclass
class Interpretation:
    """What interpretation found beyond the view: problems nothing else would show."""

    problems: list[str] = field(default_factory=list)


def load_ruleset(snapshot: NodeSnapshot) -> NftRuleset | None:
    """The parsed nft-ruleset.json of a snapshot (parsed once; the collector may have parsed it
    while reading it), or None when not captured."""
    text = snapshot.text(FILENAME)
    if text is None:
        return None
    return snapshot.derived(RULESET_KEY, (FILENAME,),
                            lambda: parse_ruleset_text(text, FILENAME, on_chain_done=note_chain_facts))


def interpret(snapshot: NodeSnapshot, lb_ips: Iterable[str] = ()) -> list[ProgrammedView[NftRuleset]]:
    """One view per kube-proxy table (``ip`` then ``ip6``) in the snapshot's nft-ruleset.json
    (interpreted once per snapshot and ``lb_ips``, as the iptables views are). ``lb_ips``: the
    LoadBalancer ingress IPs from the API (ClusterState.load_balancer_ips), which label frontends
    that have no firewall chain; the interpreter does not read the API itself."""
    ruleset = load_ruleset(snapshot)
    if ruleset is None:
        return []
    lbs = frozenset(lb_ips)
    key = "nftables.views:" + ",".join(sorted(lbs)) if lbs else "nftables.views"
    return list(snapshot.derived(key, (FILENAME,), lambda: interpret_ruleset(ruleset, lb_ips=set(lbs))))


def interpret_ruleset(ruleset: NftRuleset,
                      lb_ips: set[str] | None = None) -> list[ProgrammedView[NftRuleset]]:
    """Views of kube-proxy's tables; structure the interpreter cannot read is a ParseError."""
    views = []
    for table in ruleset.kube_proxy_tables():
        check_is_kube_proxy(table, ruleset.source)
        try:
            with gc_paused():
                views.append(interpret_table(table, ruleset, lb_ips or set()))
        except (TypeError, AttributeError, KeyError, ValueError, IndexError) as e:
            raise ParseError(ruleset.source, f"{table.label}: unexpected rule or element structure "
                                             f"({type(e).__name__}: {e})") from e
    return views


def view_source(table: NftTable) -> str:
    return "nftables" if table.family == "ip" else "nftables-ip6"


def check_is_kube_proxy(table: NftTable, source: str) -> None:
    """Refuse a table named kube-proxy that has objects but none of kube-proxy's own."""
    if not table.chains and not table.sets:
        return
    if not any(m in table.chains or m in table.sets for m in KUBE_PROXY_MARKERS):
        raise ParseError(source, f"{table.label} is not kube-proxy's: it has none of "
                                 f"{', '.join(KUBE_PROXY_MARKERS)}")


def interpret_table(table: NftTable, ruleset: NftRuleset, lb_ips: set[str]) -> ProgrammedView[NftRuleset]:
    """Build the programmed view of one kube-proxy table."""
    view = ProgrammedView(mode="nftables", source=view_source(table), raw=ruleset)
    state = _TableInterpreter(table, view, lb_ips)
    state.run()
    ruleset.problems[table.key] = state.problems
    return view


def table_problems(ruleset: NftRuleset, family: str) -> list[str]:
    """Problems found while interpreting the kube-proxy table of one family."""
    return ruleset.problems.get((family, "kube-proxy"), [])


# -- evidence rendered when first read ----------------------------------------------------------
# Rendering every rule of a big table back to nft syntax costs more than interpreting it, and
# most evidence lines are never shown: they are kept as (prefix, rule or element) until read.

EvidenceItem = str | tuple[str, NftRule | NftElement]


def _render(items: Iterable[EvidenceItem]) -> list[str]:
    return [i if isinstance(i, str) else i[1].line(i[0]) if isinstance(i[1], NftRule)
            else f"{i[0]}: {i[1].text()}" for i in items]


class NftTarget(Target):
    """A Target whose evidence (the rules that lead to its endpoint) is rendered when first read."""

    def __init__(self, endpoint: Endpoint, probability: float, steps: tuple[EvidenceItem, ...]) -> None:
        # the fields Target.__init__ would set (without going through the evidence setter)
        self.endpoint, self.probability, self.weight = endpoint, probability, None
        self.__dict__["_lines"] = None
        self.steps = steps

    @property
    def evidence(self) -> list[str]:
        lines = self.__dict__.get("_lines")
        if lines is None:
            lines = self.__dict__["_lines"] = _render(self.steps)
        return lines

    @evidence.setter
    def evidence(self, value: list[str]) -> None:
        self.__dict__["_lines"] = value or None  # None: render the steps when read


def _steps(target: Target) -> tuple[EvidenceItem, ...]:
    return target.steps if isinstance(target, NftTarget) else tuple(target.evidence)


class NftFrontend(Frontend):
    """A Frontend whose evidence is added as ``pending`` items and rendered when first read."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pending: list[EvidenceItem] = []

    @property
    def evidence(self) -> list[str]:
        lines = self.__dict__.setdefault("_lines", [])
        pending = self.__dict__.get("pending")
        if pending:
            lines.extend(_render(pending))
            pending.clear()
        return lines

    @evidence.setter
    def evidence(self, value: list[str]) -> None:
        self.__dict__["_lines"] = value


class _TableInterpreter:
    def __init__(self, table: NftTable, view: ProgrammedView, lb_ips: set[str]) -> None:
        self.table = table
        self.view = view
        self.family = 4 if table.family == "ip" else 6
        self.lb_ips = lb_ips
        self.problems: list[str] = []
        self.cluster_ips = {el.key[0] for el in self._set_elements(CLUSTER_IPS)}
        self.firewalled: dict[tuple, NftElement] = {el.key: el for el in self._set_elements(FIREWALL_IPS)}
        self._targets_cache: dict[str, tuple[list[Target], str | None]] = {}
        services = table.chains.get("services")
        # v1.36+: the ClusterIP masquerade rule is in "services", not in each service chain
        self._services_masquerade = _internal_masquerade(services) if services else "never"

    # -- map walking -----------------------------------------------------------------------------

    def _set_elements(self, name: str) -> list[NftElement]:
        nset = self.table.sets.get(name)
        return nset.elements if nset else []

    def run(self) -> None:
        for el in self._set_elements(SERVICE_IPS):
            ip, proto, port = self._ip_key(el, SERVICE_IPS)
            if ip is None:
                continue
            chain = _verdict_chain(el.value)
            cname = parse_chain_name(chain) if chain else None
            if not chain or cname is None:
                self.problems.append(f"service-ips element {el.text()} does not go to a kube-proxy "
                                     "service/local/external chain")
                continue
            kind = self._ip_kind(ip, proto, port, cname.prefix)
            fe = self._frontend(cname.name, kind, ip, port, proto)
            fe.pending.append(("map service-ips", el))
            self._fill_from_chain(fe, chain)
        for el in self._set_elements(SERVICE_NODEPORTS):
            proto, port = self._port_key(el, SERVICE_NODEPORTS)
            if proto is None:
                continue
            chain = _verdict_chain(el.value)
            cname = parse_chain_name(chain) if chain else None
            if not chain or cname is None:
                self.problems.append(f"service-nodeports element {el.text()} does not go to a kube-proxy "
                                     "external chain")
                continue
            fe = self._frontend(cname.name, "node-port", None, port, proto)
            fe.pending.append(("map service-nodeports", el))
            self._fill_from_chain(fe, chain)
        for el in self._set_elements(NO_ENDPOINT_SERVICES):
            ip, proto, port = self._ip_key(el, NO_ENDPOINT_SERVICES)
            if ip is None:
                continue
            name = self._name_from_comment(el, proto, NO_ENDPOINT_SERVICES)
            if name is None:
                continue
            kind = "cluster-ip" if ip in self.cluster_ips else self._external_kind(ip, proto, port)
            fe = self._frontend(name, kind, ip, port, proto)
            fe.no_endpoints = _no_endpoint_verdict(el.value)
            fe.pending.append(("map no-endpoint-services", el))
        for el in self._set_elements(NO_ENDPOINT_NODEPORTS):
            proto, port = self._port_key(el, NO_ENDPOINT_NODEPORTS)
            if proto is None:
                continue
            name = self._name_from_comment(el, proto, NO_ENDPOINT_NODEPORTS)
            if name is None:
                continue
            fe = self._frontend(name, "node-port", None, port, proto)
            fe.no_endpoints = _no_endpoint_verdict(el.value)
            fe.pending.append(("map no-endpoint-nodeports", el))
        for key, el in self.firewalled.items():
            self._apply_firewall(key, el)

    def _ip_key(self, el: NftElement, where: str) -> tuple:
        if len(el.key) != 3 or not isinstance(el.key[2], int):
            self.problems.append(f"{where} element {el.key_text()}: key is not ip . proto . port")
            return (None, None, None)
        return (str(el.key[0]), proto_name(el.key[1]).upper(), el.key[2])

    def _port_key(self, el: NftElement, where: str) -> tuple:
        if len(el.key) != 2 or not isinstance(el.key[1], int):
            self.problems.append(f"{where} element {el.key_text()}: key is not proto . port")
            return (None, None)
        return (proto_name(el.key[0]).upper(), el.key[1])

    def _name_from_comment(self, el: NftElement, proto: str, where: str) -> ServicePortName | None:
        name = parse_comment_name(el.comment, proto)
        if name is None:
            self.problems.append(f"{where} element {el.text()} has no 'ns/svc:port' comment naming "
                                 "its service port")
        return name

    def _ip_kind(self, ip: str, proto: str, port: int, prefix: str) -> str:
        """ClusterIPs go to the service (or, internalTrafficPolicy Local, local) chain; external and
        load-balancer IPs to the external chain."""
        if prefix in ("service", "local"):
            if self.cluster_ips and ip not in self.cluster_ips:
                self.problems.append(f"service-ips: {ip} goes to a {prefix} chain but is not in @cluster-ips")
            return "cluster-ip"
        return self._external_kind(ip, proto, port)

    def _external_kind(self, ip: str, proto: str, port: int) -> str:
        if ip in self.lb_ips or (ip, proto.lower(), port) in self.firewalled:
            return "load-balancer"
        return "external-ip"

    def _frontend(self, name: ServicePortName, kind: str, ip: str | None, port: int,
                  proto: str) -> NftFrontend:
        if name.protocol != proto:
            self.problems.append(f"{name}: chain protocol {name.protocol} but map key protocol {proto}")
        pp = self.view.add(ProgrammedPort(name, self.family))
        for existing in pp.frontends:
            if isinstance(existing, NftFrontend) and existing.kind == kind and existing.ip == ip \
                    and existing.port == port and existing.protocol == proto:
                return existing
        fe = NftFrontend(kind=kind, ip=ip, port=port, protocol=proto)
        pp.frontends.append(fe)
        return fe

    # -- chains ----------------------------------------------------------------------------------

    def _fill_from_chain(self, fe: NftFrontend, chain_name: str) -> None:
        chain = self.table.chains.get(chain_name)
        if chain is None:
            self.problems.append(f"{fe.address}: map element goes to missing chain {chain_name}")
            return
        cname = parse_chain_name(chain_name)
        fe.pending.extend(_chain_evidence(chain))
        if cname and cname.prefix == "local":
            fe.policy = "local"
        if cname and cname.prefix == "external":
            final = _final_goto(chain)
            if final and (pc := parse_chain_name(final)) and pc.prefix == "local":
                fe.policy = "local"
            elif final is None and any(_is_short_circuit(r) for r in chain.rules):
                fe.policy = "local"  # eTP Local without local endpoints: only short-circuits remain
            fe.masquerade = _external_masquerade(chain)
            if final and final in self.table.chains:
                fe.pending.extend(_chain_evidence(self.table.chains[final]))
                policy_chain = self.table.chains[final]
            else:
                policy_chain = None
        else:
            policy_chain = chain
        if policy_chain is not None:
            if not fe.masquerade:
                fe.masquerade = _internal_masquerade(policy_chain)
                if fe.masquerade == "never" and fe.kind == "cluster-ip":
                    fe.masquerade = self._services_masquerade
            fe.affinity_seconds = self._affinity(policy_chain)
        targets, problem = self._targets(chain_name, 0)
        if problem and problem.startswith(UNKNOWN):
            fe.unknown_layout = problem  # reported by the structure check; not compared as drift
        elif problem:
            self.problems.append(f"{fe.address} ({chain_name}): {problem}")
        fe.targets = list(targets)  # Target objects are shared between frontends: read-only

    def _targets(self, chain_name: str, depth: int) -> tuple[list[Target], str | None]:
        """Where new connections entering ``chain_name`` end, with their probabilities."""
        if chain_name in self._targets_cache:
            return self._targets_cache[chain_name]  # shared: callers copy before changing
        if depth > MAX_DEPTH:
            return [], f"chain loop through {chain_name}"
        chain = self.table.chains.get(chain_name)
        if chain is None:
            return [], f"goes to missing chain {chain_name}"
        if _walk_holds(chain, self.table):
            walked = chain.walk[1]  # type: ignore[index]  # worked out while the listing was read
            self._targets_cache[chain_name] = walked
            return walked
        result: tuple[list[Target], str | None] = ([], None)
        decisive = _decisive_rule(chain)
        if decisive is not None:
            kind, rule, data = decisive
            if kind == "numgen":
                mod, entries = data
                result = _numgen_result(chain_name, rule, mod, entries,
                                        [self._targets(target, depth + 1) for _key, target in entries])
            elif kind == "dnat":
                result = data
            else:
                result = self._targets(data, depth + 1)
        else:
            cname = parse_chain_name(chain_name)
            unknown = _unknown_rules(chain, cname.prefix) if cname else []
            if unknown:
                result = ([], UNKNOWN + unknown[0])
            elif cname and cname.prefix in ("service", "local", "endpoint") and not chain.rules:
                result = ([], f"chain {chain_name} is empty (flushed)")
            elif cname and cname.prefix == "endpoint":
                result = ([], f"endpoint chain {chain_name} has no dnat rule")
        self._targets_cache[chain_name] = result
        return result

    def _affinity(self, chain: NftChain) -> int | None:
        facts = chain.facts
        sets = facts.affinity_sets if facts is not None else None
        for right in sets if sets is not None else _affinity_sets(chain.rules):
            nset = self.table.sets.get(right[1:])
            if nset is not None and nset.timeout is not None:
                return nset.timeout
            self.problems.append(f"{chain.name}: affinity set {right} is missing or has no timeout")
        return None

    def _apply_firewall(self, key: tuple, el: NftElement) -> None:
        if len(key) != 3:
            self.problems.append(f"firewall-ips element {el.key_text()}: key is not ip . proto . port")
            return
        ip, proto, port = str(key[0]), proto_name(key[1]).upper(), key[2]
        chain_name = _verdict_chain(el.value)
        cname = parse_chain_name(chain_name) if chain_name else None
        if not chain_name or cname is None:
            self.problems.append(f"firewall-ips element {el.text()} does not go to a firewall- chain")
            return
        fe = self._frontend(cname.name, "load-balancer", ip, port, proto)
        fe.pending.append(("map firewall-ips", el))
        chain = self.table.chains.get(chain_name)
        if chain is None:
            self.problems.append(f"{fe.address}: firewall-ips goes to missing chain {chain_name}")
            return
        fe.pending.extend(_chain_evidence(chain))
        for rule in chain.rules:
            ranges = _allowed_sources(rule)
            if ranges is not None:
                fe.source_ranges = ranges


# -- rule shapes kube-proxy writes -------------------------------------------------------------------


def _dnat_result(chain_name: str, rule: NftRule) -> tuple[list[Target], str | None] | None:
    """Where a ``dnat`` rule ends a chain's walk: ``dnat to ip:port``, or (v1.36+) ``dnat ip to
    numgen random mod N map { i : ip . port }`` with each endpoint's share; None when it is not
    one kube-proxy writes."""
    body = dnat_statement(rule)
    if body is None:
        return None
    ep = dnat_endpoint(body)
    if ep is None:
        mapped = dnat_numgen_map(body)
        if mapped is None:
            return None
        mod, entries = mapped
        problem = _numgen_problem(mod, [k for k, _ in entries])
        step = (chain_name, rule)
        shares = [(1.0 / mod) if (mod and 0 <= k < mod) else 0.0 for k, _ in entries]
        return [NftTarget(e, p, (step,)) for (_, e), p in zip(entries, shares, strict=True)], problem
    problem = None
    if chain_name.startswith("endpoint-") and not chain_name.endswith(f"__{_name_endpoint(ep)}"):
        problem = f"chain {chain_name} DNATs to {ep}, not the endpoint its name says"
    return [NftTarget(ep, 1.0, ((chain_name, rule),))], problem


def _numgen_problem(mod: int, keys: list[int]) -> str | None:
    if mod != len(keys) or sorted(keys) != list(range(len(keys))):
        return f"numgen random mod {mod} but {len(keys)} map entries ({', '.join(str(k) for k in keys)})"
    return None


def _unknown_rules(chain: NftChain, kind: str) -> list[str]:
    """What in ``chain`` (of kube-proxy chain kind ``kind``) no layout generation writes."""
    return [f"{why}: {chain.name}: {rule.text}" for rule, why in unknown_rules(chain, kind)]


def unknown_rules(chain: NftChain, kind: str) -> tuple[tuple[NftRule, str], ...]:
    """(rule, why) for each rule of ``chain`` (kube-proxy chain kind ``kind``) that no layout
    generation writes (layout.unknown_rule)."""
    facts = chain.facts
    if facts is not None and facts.kind == kind:
        return facts.unknown
    return tuple((rule, why) for rule in chain.rules if (why := unknown_rule(kind, rule)))


def _decisive_rule(chain: NftChain) -> tuple[str, NftRule, Any] | None:
    """The first rule that decides where a new connection in ``chain`` goes, as kube-proxy writes
    them: ("numgen", rule, (mod, entries)), ("dnat", rule, its targets and problem) or
    ("goto", rule, chain name); None when no rule decides (the walk ends in this chain)."""
    facts = chain.facts
    return facts.deciding(chain) if facts is not None else _decisive_of(chain)


def _decisive_of(chain: NftChain, rules: list[NftRule] | None = None) -> tuple[str, NftRule, Any] | None:
    for rule in chain.rules if rules is None else rules:
        expr = rule.expr
        if not expr:
            continue
        last = expr[-1]  # one statement: {"vmap": ...}, {"dnat": ...}, {"goto": ...}, ...
        if "vmap" in last:
            numgen = _numgen_vmap(rule)
            if numgen is not None:
                return "numgen", rule, numgen
            continue
        if "dnat" in last:
            result = _dnat_result(chain.name, rule)
            if result is not None:
                return "dnat", rule, result
            continue
        target = verdict_chain(last) if len(expr) == 1 else None
        if target is not None and target != MASQ_CHAIN:
            return "goto", rule, target
    return None


def _numgen_result(chain_name: str, rule: NftRule, mod: int, entries: list[tuple[int, str]],
                   subs: list[tuple[list[Target], str | None]]) -> tuple[list[Target], str | None]:
    """Where ``numgen random mod N vmap {...}`` sends new connections, given where each entry's
    chain ends (``subs``, in entry order): every endpoint with its share of the probability."""
    problem = _numgen_problem(mod, [k for k, _ in entries])
    if problem:
        problem = problem.replace(" map entries", " vmap entries")
    step = (chain_name, rule)
    targets: list[Target] = []
    for (key, _target), (sub, sub_problem) in zip(entries, subs, strict=True):
        share = (1.0 / mod) if (mod and 0 <= key < mod) else 0.0
        problem = problem or sub_problem
        targets.extend(NftTarget(t.endpoint, t.probability * share, (step, *_steps(t))) for t in sub)
    return targets, problem


def note_chain_done(table: NftTable, chain: NftChain) -> None:
    """For RulesetBuilder's ``on_chain_done``, while the listing is still being read: walk what
    can be walked already, as ``_targets`` would, and keep it on the chain (``chain.walk``).

    - an ``endpoint-`` chain that ends in its own ``dnat to`` rule;
    - a ``service-`` or ``local-`` chain that DNATs itself (v1.36+: ``dnat ip to numgen ... map``);
    - a ``service-`` or ``local-`` chain whose ``numgen`` entries all go to endpoint chains walked
      already. kube-proxy creates a service's endpoint chains before its service chain, and nft
      lists rules in chain order, so on a freshly synced table this is every service chain; an
      endpoint chain added later is listed after its service chain, which is then left to the
      interpreter.

    A walk depends only on the chain's first deciding rule (``_decisive_rule``), which rules
    listed later cannot change, and on the chains it used: it holds while they are still the
    table's (a chain listed twice replaces the first)."""
    name = chain.name
    if name.startswith("endpoint-"):
        decisive = _decisive_rule(chain)
        if decisive is not None and decisive[0] == "dnat":
            chain.walk = ((), decisive[2])
    elif name.startswith(("service-", "local-")):
        decisive = _decisive_rule(chain)
        if decisive is not None and decisive[0] == "dnat":
            chain.walk = ((), decisive[2])
            return
        if decisive is None or decisive[0] != "numgen":
            return
        _kind, rule, (mod, entries) = decisive
        used, walks = [], []
        for _key, target in entries:
            sub = table.chains.get(target)
            if sub is None or sub.walk is None or sub.walk[0]:
                return  # not an endpoint chain walked already
            used.append(sub)
            walks.append(sub.walk[1])
        chain.walk = (tuple(used), _numgen_result(name, rule, mod, entries, walks))


_NOT_READ = "\0not read"  # ChainFacts.final_goto not worked out (None is a result)

# chain kinds whose rules are summed up while the listing is read (firewall- chains keep theirs:
# the interpreter reads their source ranges)
FACT_KINDS = frozenset({"service", "local", "external", "endpoint"})


class ChainFacts:
    """What the interpreter and the checks read of one kube-proxy service, local, external or
    endpoint chain's rules, worked out once while the listing is read, by the very functions that
    would otherwise read the rules (so the rules need not keep their decoded expressions)."""

    __slots__ = ("kind", "decisive", "decisive_at", "internal_masquerade", "external_masquerade",
                 "final_goto", "affinity_sets", "unknown", "targets", "numgen")

    def __init__(self, chain: NftChain, kind: str, names: dict[str, NftChain]) -> None:
        rules = chain.rules
        self.kind = kind
        # the deciding rule's index: its result (``_decisive_of``) is kept only until the early
        # walk has used it, and worked out again from that one rule if ever asked for later
        self.decisive = decisive = _decisive_of(chain)
        self.decisive_at = next(i for i, r in enumerate(rules) if r is decisive[1]) if decisive else -1
        # what the interpreter reads of this kind of chain (_fill_from_chain); None: not worked
        # out (read from the rules if ever asked for)
        policy = kind in ("service", "local")
        self.internal_masquerade = _internal_masquerade_of(rules) if policy else None
        self.affinity_sets = _affinity_sets(rules) if policy else None
        self.external_masquerade = _external_masquerade_of(rules) if kind == "external" else None
        self.final_goto = _final_goto_of(rules) if kind == "external" else _NOT_READ
        self.unknown = tuple((rule, why) for rule in rules if (why := unknown_rule(kind, rule)))
        # every chain the rules jump or go to (checks: chain references), as the listed chain's
        # own name string where there is one (one string per chain name, not one per reference)
        targets = []
        for rule in rules:
            for target in rule_targets(rule.expr):
                known = names.get(target)
                targets.append(known.name if known is not None else target)
        self.targets = tuple(targets)
        # (rule, what is wrong) for each numgen rule whose entries are not 0..N-1 (checks)
        self.numgen = tuple((rule, problem) for rule in rules if (problem := numgen_problem(rule)))

    def deciding(self, chain: NftChain) -> tuple[str, NftRule, Any] | None:
        """``_decisive_of(chain)``, from the one rule that decides."""
        if self.decisive is not None or self.decisive_at < 0:
            return self.decisive
        return _decisive_of(chain, chain.rules[self.decisive_at:self.decisive_at + 1])


def note_chain_facts(table: NftTable, chain: NftChain) -> None:
    """The ``on_chain_done`` of a capture read from its text: a kube-proxy service, local,
    external or endpoint chain is summed up (ChainFacts; the builder then drops its rules'
    decoded expressions) and walked early (note_chain_done)."""
    chain.facts = None
    if table.name == "kube-proxy" and chain.hook is None:
        kind = _service_chain_kind(chain.name)
        if kind in FACT_KINDS:
            chain.facts = ChainFacts(chain, kind, table.chains)
    note_chain_done(table, chain)
    if chain.facts is not None:
        chain.facts.decisive = None


def _service_chain_kind(name: str) -> str | None:
    """``parse_chain_name(name).prefix`` (None when that is None), without building the name."""
    m = CHAIN_RE.match(name)
    if m is None or m.group(3).partition("__")[0].count("/") != 3:
        return None
    return m.group(1)


def _walk_holds(chain: NftChain, table: NftTable) -> bool:
    """Whether the walk kept on ``chain`` (the table's) is what walking it now would give."""
    walk = chain.walk
    if walk is None:
        return False
    chains = table.chains
    return all(chains.get(sub.name) is sub for sub in walk[0])


_verdict_chain = verdict_chain
_numgen_vmap = numgen_vmap


def _no_endpoint_verdict(value: object) -> str:
    if isinstance(value, dict):
        if "drop" in value:
            return "drop"
        if "reject" in value or _verdict_chain(value) == "reject-chain":
            return "reject"
        target = _verdict_chain(value)
        if target:
            return f"goto {target}"
    return json.dumps(value)


def _chain_evidence(chain: NftChain) -> list[tuple[str, NftRule]]:
    return [(chain.name, r) for r in chain.rules]


def _unconditional_goto(rule: NftRule) -> str | None:
    if len(rule.expr) == 1:
        return _verdict_chain(rule.expr[0])
    return None


def _final_goto(chain: NftChain) -> str | None:
    facts = chain.facts
    if facts is None or facts.final_goto is _NOT_READ:
        return _final_goto_of(chain.rules)
    return facts.final_goto


def _final_goto_of(rules: list[NftRule]) -> str | None:
    for rule in rules:
        target = _unconditional_goto(rule)
        if target and target != MASQ_CHAIN and "goto" in rule.expr[0]:
            return target
    return None


def _is_short_circuit(rule: NftRule) -> bool:
    return bool(rule.comment and rule.comment.startswith("short-circuit"))


def _internal_masquerade(chain: NftChain) -> str:
    facts = chain.facts
    known = None if facts is None else facts.internal_masquerade  # (summed up while read)
    return _internal_masquerade_of(chain.rules) if known is None else known


def _internal_masquerade_of(rules: list[NftRule]) -> str:
    for rule in rules:
        if not marks_masquerade(rule):
            continue
        for stmt in rule.expr:
            m = stmt.get("match")
            if isinstance(m, dict) and m.get("op") == "!=" and _is_saddr(m.get("left")):
                from kubectl_proxydoctor.formats.nft_render import render_expr

                return f"from sources outside {render_expr(m.get('right'))} (off-cluster traffic)"
            if isinstance(m, dict) and "fib" in (m.get("left") or {}):
                return "from sources that are not local to this node"
        return "always (masqueradeAll)"
    return "never"


def _external_masquerade(chain: NftChain) -> str:
    facts = chain.facts
    known = None if facts is None else facts.external_masquerade  # (summed up while read)
    return _external_masquerade_of(chain.rules) if known is None else known


def _external_masquerade_of(rules: list[NftRule]) -> str:
    for rule in rules:
        if marks_masquerade(rule):
            if len(rule.expr) == 1:
                return "always (externalTrafficPolicy Cluster)"
            return "only traffic from this node itself (externalTrafficPolicy Local keeps client IPs)"
    return "never"


def _affinity_sets(rules: list[NftRule]) -> tuple[str, ...]:
    """``@affinity-...`` sets the rules match against, in order."""
    out = []
    for rule in rules:
        for stmt in rule.expr:
            right = stmt.get("match", {}).get("right") if "match" in stmt else None
            if isinstance(right, str) and right.startswith("@affinity-"):
                out.append(right)
    return tuple(out)


def _is_saddr(expr: object) -> bool:
    return isinstance(expr, dict) and expr.get("payload", {}).get("field") == "saddr"


def _allowed_sources(rule: NftRule) -> list[str] | None:
    """The loadBalancerSourceRanges of ``ip saddr != { ... } drop``."""
    has_drop = any("drop" in s for s in rule.expr)
    for stmt in rule.expr:
        m = stmt.get("match")
        if has_drop and isinstance(m, dict) and m.get("op") == "!=" and _is_saddr(m.get("left")):
            from kubectl_proxydoctor.formats.nft_render import render_expr

            right = m.get("right")
            items = right.get("set") if isinstance(right, dict) and "set" in right else [right]
            return [render_expr(i) for i in items or []]
    return None


def _name_endpoint(ep: Endpoint) -> str:
    return f"{ep.ip.replace(':', '.')}/{ep.port}"


register_live_chain_hook(note_chain_done)  # the collector walks chains while nft prints them
