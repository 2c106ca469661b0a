"""Structural checks on kube-proxy's nftables tables and on tables hooked in front of them.

- ``unreferenced-chain``: a chain of kube-proxy's table that nothing jumps to or maps to;
- ``missing-chain``: a rule or map element that goes to a chain that does not exist;
- ``numgen-mismatch``: ``numgen random mod N`` whose vmap does not have exactly entries 0..N-1;
- ``nft-unrecognised``: map elements the interpreter could not attribute to a service port;
- ``unknown-layout``: a rule in a kube-proxy service/endpoint chain that no kube-proxy generation
  writes (layout.py), or a table in no known generation: a warning, never drift;
- ``firewall-in-front``: another table's base chain, at the same hook with an earlier priority than
  kube-proxy's DNAT, that drops or rejects traffic to a service frontend;
- ``mode-leftover``: kube-proxy's nftables tables still loaded while the node runs another mode.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kubectl_proxydoctor.checks import CheckContext, check
from kubectl_proxydoctor.errors import ProxyDoctorError
from kubectl_proxydoctor.formats.nft_model import (
    NftChain,
    NftElement,
    NftRule,
    NftRuleset,
    NftTable,
    is_ip_text,
    priority_text,
)
from kubectl_proxydoctor.kube_proxy_pod import for_context
from kubectl_proxydoctor.model import Finding, Frontend, ProgrammedView, ServicePortName
from kubectl_proxydoctor.modes.nftables.layout import (
    GENERATIONS,
    HELPER_CHAINS,
    NODEPORT_IPS,
    SERVICE_CHAIN_KINDS,
    SERVICE_IPS,
    SERVICE_NODEPORTS,
    generation,
    numgen_problem,
    rule_targets,
)

MODE = "nftables"
HOOKS_IN_FRONT = ("prerouting", "output")
MAX_DEPTH = 16


# -- getting at the parsed ruleset -------------------------------------------------------------


def _nft_views(ctx: CheckContext) -> list[ProgrammedView]:
    return [v for v in ctx.views if v.mode == MODE and isinstance(v.raw, NftRuleset)]


def _ruleset(ctx: CheckContext) -> NftRuleset | None:
    views = _nft_views(ctx)
    if views:
        return views[0].raw
    from kubectl_proxydoctor.modes.nftables.interpreter import load_ruleset

    try:
        return load_ruleset(ctx.snapshot)
    except ProxyDoctorError:
        return None  # the interpreter reports an unreadable file itself


def _port_of(chain_name: str) -> ServicePortName | None:
    from kubectl_proxydoctor.modes.nftables.interpreter import parse_chain_name

    name = parse_chain_name(chain_name)
    return name.name if name else None


def _finding(code: str, severity: str, message: str, chain: str | None = None, **kw: object) -> Finding:
    port = _port_of(chain) if chain else None
    if port is not None:
        return Finding.for_port(port, code=code, severity=severity, message=message, mode=MODE, **kw)
    return Finding(code=code, severity=severity, message=message, mode=MODE, **kw)  # type: ignore[arg-type]


# -- references --------------------------------------------------------------------------------


def _references(table: NftTable) -> dict[str, list[tuple[str, NftRule | NftElement]]]:
    """chain name -> where it is referenced from: (chain or map label, rule or element), rendered
    as evidence only when shown. Where a chain's rules were summed up while the listing was read
    (NftChain.facts) only the names they reference are known at first: their rules are read
    again only when one of those names is not a chain of the table (the evidence then needs them)."""
    refs: dict[str, list[tuple[str, NftRule | NftElement]]] = {}
    chains = table.chains
    missing = any(t not in chains for c in chains.values() if c.facts is not None for t in c.facts.targets)
    for chain in chains.values():
        facts = chain.facts
        if facts is not None and not missing:
            for target in facts.targets:
                refs.setdefault(target, []).append(_NOT_SHOWN)
            continue
        for rule in chain.rules:
            for target in rule_targets(rule.expr):
                refs.setdefault(target, []).append((chain.name, rule))
    for nset in table.sets.values():
        for el in nset.elements:
            for target in rule_targets(el.value):
                refs.setdefault(target, []).append((f"map {nset.name}", el))
    return refs


# a reference to a listed chain (its evidence is never shown)
_NOT_SHOWN: tuple[str, NftRule | NftElement] = ("", NftElement(()))


def _where(ref: tuple[str, NftRule | NftElement]) -> str:
    label, obj = ref
    return f"{label}: {obj.text if isinstance(obj, NftRule) else obj.text()}"


@check("nftables-chain-references")
def chain_references(ctx: CheckContext) -> Iterable[Finding]:
    """kube-proxy chains nothing references, and references to chains that do not exist."""
    ruleset = _ruleset(ctx)
    if ruleset is None:
        return []
    kube_proxy = for_context(ctx)
    findings: list[Finding] = []
    for table in ruleset.kube_proxy_tables():
        refs = _references(table)
        for target, where in sorted(refs.items()):
            if target not in table.chains:
                findings.append(_finding(
                    "missing-chain", "error",
                    f"{table.label}: {len(where)} reference(s) go to chain {target}, which does not exist: "
                    "packets sent there are dropped by the kernel lookup failure or never programmed",
                    target, evidence=[_where(w) for w in where[:10]],
                    fix="kube-proxy rewrites its whole table on a full sync: restart this node's "
                        f"kube-proxy (`{kube_proxy.restart}`) and check its log (`{kube_proxy.logs}`) "
                        "for nftables sync errors."))
        for chain in table.chains.values():
            if chain.is_base or chain.name in refs or chain.name in HELPER_CHAINS:
                continue
            if not chain.rules:
                findings.append(_finding(
                    "unreferenced-chain", "info",
                    f"{table.label}: chain {chain.name} is empty and unreferenced (kube-proxy flushes "
                    "stale chains and deletes them about a second later; if it stays, syncs are not "
                    "completing)", chain.name, evidence=[f"chain {chain.name} (0 rules)"]))
            else:
                findings.append(_finding(
                    "unreferenced-chain", "warning",
                    f"{table.label}: chain {chain.name} has {len(chain.rules)} rule(s) but nothing jumps, "
                    "goes or maps to it: dead rules kube-proxy did not clean up (a failed sync, or added "
                    "by hand)", chain.name,
                    evidence=[f"{chain.name}: {r.text}" for r in chain.rules[:10]],
                    fix="If kube-proxy is running, its next full sync removes it; otherwise restart this "
                        f"node's kube-proxy (`{kube_proxy.restart}`). Do not add rules to kube-proxy's "
                        "table by hand."))
    return findings


@check("nftables-numgen")
def numgen_moduli(ctx: CheckContext) -> Iterable[Finding]:
    """``numgen random mod N vmap`` whose entries are not exactly 0..N-1."""
    ruleset = _ruleset(ctx)
    if ruleset is None:
        return []
    findings = []
    for table in ruleset.kube_proxy_tables():
        for chain in table.chains.values():
            facts = chain.facts
            problems = facts.numgen if facts is not None else \
                [(rule, problem) for rule in chain.rules if (problem := numgen_problem(rule))]
            for rule, problem in problems:
                if problem:
                    findings.append(_finding(
                        "numgen-mismatch", "error", f"{table.label} chain {chain.name}: {problem}",
                        chain.name, evidence=[f"{chain.name}: {rule.text}"],
                        fix="kube-proxy writes mod N with exactly N endpoint entries; this rule was "
                            "changed by hand or by a partial write. Restart kube-proxy to rewrite it."))
    return findings


@check("nftables-layout")
def unknown_layout(ctx: CheckContext) -> Iterable[Finding]:
    """Rules of kube-proxy's service, endpoint and firewall chains that no generation writes, and
    tables in no known generation: warnings naming the rule (never compared as drift)."""
    from kubectl_proxydoctor.modes.nftables.interpreter import unknown_rules

    ruleset = _ruleset(ctx)
    if ruleset is None:
        return []
    findings = []
    for table in ruleset.kube_proxy_tables():
        if table.chains and generation(table) is None:
            findings.append(Finding(
                code="unknown-layout", severity="warning", mode=MODE,
                message=f"unknown layout: {table.label} has none of the base chains of a known kube-proxy "
                        f"generation ({', '.join(GENERATIONS)})",
                evidence=[f"{table.label}: chain {c.name} {{ {c.header()} }}"
                          for c in table.base_chains()][:8],
                fix="Check which kube-proxy version wrote this table (`kubectl -n kube-system get ds "
                    "kube-proxy -o jsonpath='{.spec.template.spec.containers[0].image}'`); proxydoctor "
                    "reads the layouts of v1.29 to v1.37."))
        for chain in table.chains.values():
            kind = chain.name.split("-", 1)[0]
            if kind not in SERVICE_CHAIN_KINDS or chain.is_base or chain.name in HELPER_CHAINS:
                continue
            for rule, why in unknown_rules(chain, kind):
                if why and _port_of(chain.name) is not None:  # a kube-proxy service chain's name
                    findings.append(_finding(
                        "unknown-layout", "warning", f"unknown layout: {table.label}: {why}", chain.name,
                        evidence=[f"{chain.name}: {rule.text}"],
                        fix="Not a rule kube-proxy v1.29-v1.37 writes: a newer kube-proxy layout, or "
                            "something else edits kube-proxy's table. The service port's endpoints are "
                            "not compared while its rules are not understood."))
    return findings


@check("nftables-unrecognised")
def unrecognised(ctx: CheckContext) -> Iterable[Finding]:
    """Map elements or chains the interpreter could not attribute (never silently skipped)."""
    from kubectl_proxydoctor.modes.nftables.interpreter import table_problems

    findings = []
    for view in _nft_views(ctx):
        family = "ip" if view.source == "nftables" else "ip6"
        for problem in table_problems(view.raw, family):  # type: ignore[arg-type]
            findings.append(Finding(code="nft-unrecognised", severity="warning", mode=MODE,
                                    message=f"table {family} kube-proxy: {problem}",
                                    fix="Not in kube-proxy's layout: check what else writes to kube-proxy's "
                                        "table, and restart kube-proxy to rewrite it."))
    return findings


# -- mode leftovers ----------------------------------------------------------------------------


@check("nftables-mode-leftover")
def mode_leftover(ctx: CheckContext) -> Iterable[Finding]:
    """kube-proxy's nftables tables loaded while kube-proxy runs in iptables or IPVS mode.

    checks/proxy_mode.py ("proxy-mode-leftover") reports every mode's leftovers from its decided
    running mode; when it is registered this check defers to it, so a table is reported once.
    """
    from kubectl_proxydoctor.checks import REGISTRY

    if "proxy-mode-leftover" in REGISTRY:
        return []
    return mode_leftover_findings(ctx)


def mode_leftover_findings(ctx: CheckContext) -> list[Finding]:
    """The nftables leftover findings, from the running mode (CheckContext.running_mode)."""
    mode = ctx.running_mode()
    if mode is None or mode == MODE:
        return []
    ruleset = _ruleset(ctx)
    if ruleset is None:
        return []
    findings = []
    for table in ruleset.kube_proxy_tables():
        if not table.chains and not table.sets:
            continue
        hooked = [c for c in table.chains.values() if c.is_base]
        elements = sum(len(table.sets[n].elements) for n in (SERVICE_IPS, SERVICE_NODEPORTS)
                       if n in table.sets)
        active = bool(hooked) and elements > 0
        hooks = ", ".join(f"{c.name} ({c.hook} {priority_text(c.prio, c.hook)})" for c in hooked) or "none"
        findings.append(Finding(
            code="mode-leftover", severity="error" if active else "warning", mode=MODE,
            message=(f"kube-proxy runs in {mode} mode, but {table.label} (nftables mode) is still loaded: "
                     f"{len(table.chains)} chains, {elements} service-ips/service-nodeports elements, "
                     f"base chains: {hooks}"
                     + ("; it still DNATs service traffic with stale endpoints, racing the active mode"
                        if active else "")),
            evidence=[f"{table.label}: chain {c.name} {{ {c.header()} }}" for c in hooked][:8],
            fix=f"Remove the stale table once you have confirmed kube-proxy runs in {mode} mode: "
                f"`nft delete table {table.family} kube-proxy` (or run `kube-proxy --cleanup` and restart "
                "kube-proxy)."))
    return findings


# -- firewall in front -------------------------------------------------------------------------


@dataclass
class _Hit:
    rule_text: str
    verdict: str  # "drop" | "reject" | "policy drop"
    scope: str  # "all" | "some"
    conditions: list[str]


@check("nftables-firewall-in-front")
def firewall_in_front(ctx: CheckContext) -> Iterable[Finding]:
    """Other tables hooked before kube-proxy's DNAT that drop or reject service traffic."""
    ruleset = _ruleset(ctx)
    if ruleset is None:
        return []
    local = _local_addresses(ctx)
    findings = []
    for view in _nft_views(ctx):
        family = "ip" if view.source == "nftables" else "ip6"
        kp = ruleset.table(family, "kube-proxy")
        if kp is None:
            continue
        for hook in HOOKS_IN_FRONT:
            kp_chains = sorted(kp.base_chains(hook), key=lambda c: c.prio or 0)
            dnat = next((c for c in kp_chains if c.type == "nat"), None)
            if dnat is None:
                continue
            earliest = kp_chains[0]
            np_set = kp.sets.get(NODEPORT_IPS)
            node_ips = {str(el.key[0]) for el in np_set.elements} if np_set and np_set.elements else local
            for table in ruleset.tables.values():
                if table is kp or table.family not in (family, "inet"):
                    continue
                for chain in table.base_chains(hook):
                    if chain.prio is None or chain.prio >= (dnat.prio or 0):
                        continue
                    findings.extend(_chain_findings(table, chain, hook, earliest, dnat, view, node_ips))
    return findings


def _chain_findings(table: NftTable, chain: NftChain, hook: str, earliest: NftChain, dnat: NftChain,
                    view: ProgrammedView, local: set[str]) -> list[Finding]:
    where = "ahead of every kube-proxy hook" if (chain.prio or 0) < (earliest.prio or 0) else \
        "ahead of kube-proxy's DNAT"
    context = (f"table {table.family} {table.name}, chain {chain.name} (type {chain.type} hook {hook} "
               f"priority {chain.prio}, listed by nft as 'priority {priority_text(chain.prio, hook)}'; "
               f"{where}: its earliest {hook} chain is {earliest.name} at "
               f"{priority_text(earliest.prio, hook)} = {earliest.prio}, the DNAT at "
               f"{priority_text(dnat.prio, hook)} = {dnat.prio})")
    findings = []
    for port in view.ports.values():
        hits: dict[tuple[str, str], tuple[_Hit, list[Frontend]]] = {}
        for fe in port.frontends:
            if fe.kind == "node-port" and hook == "output":
                continue
            for hit in _walk(table, chain, fe, local, 0):
                hits.setdefault((hit.rule_text, hit.verdict), (hit, []))[1].append(fe)
        for (rule_text, _verdict), (hit, frontends) in hits.items():
            targets = ", ".join(_describe(fe) for fe in frontends)
            verb = "dropped" if "drop" in hit.verdict else "rejected"
            origin = "from this node " if hook == "output" else ""
            if hit.scope == "all":
                effect = (f"every connection {origin}to {targets} ({port.name}) is {verb} before kube-proxy "
                          "sees it")
            else:
                effect = (f"connections {origin}to {targets} ({port.name}) that match "
                          f"{' and '.join(hit.conditions)} are {verb} before kube-proxy sees them")
            shown = f"has policy {chain.policy}" if hit.verdict == "policy drop" else f"has '{rule_text}'"
            findings.append(Finding.for_port(
                port.name, code="firewall-in-front", severity="error" if hit.scope == "all" else "warning",
                mode=MODE, message=f"{context} {shown}: {effect}",
                evidence=[f"table {table.family} {table.name} chain {chain.name} {{ {chain.header()} }}",
                          f"{chain.name}: {rule_text}"],
                fix=f"Allow the service traffic in the host firewall (table {table.family} {table.name}, "
                    f"chain {chain.name}) or {_move_after_dnat(hook, dnat)}."))
    return findings


def _move_after_dnat(hook: str, dnat: NftChain) -> str:
    """Where a firewall chain on ``hook`` sees service traffic after kube-proxy's DNAT."""
    if hook == "output":  # locally generated packets: the same output hook, a later priority
        return (f"move that output chain after kube-proxy's DNAT on the output hook (priority > "
                f"{dnat.prio}, e.g. 'type filter hook output priority filter')")
    return (f"move that filtering after kube-proxy's DNAT (priority > {dnat.prio}): chains on the input "
            "and forward hooks ('type filter hook input priority filter' and 'hook forward') see the "
            "DNATed destination")


def _describe(fe: Frontend) -> str:
    if fe.kind == "node-port":
        return f"NodePort {fe.port}"
    label = {"cluster-ip": "", "external-ip": "external IP ", "load-balancer": "load-balancer IP "}[fe.kind]
    return f"{label}{fe.address}"


def _walk(table: NftTable, chain: NftChain, fe: Frontend, local: set[str], depth: int) -> list[_Hit]:
    """Drop/reject rules of ``chain`` (following jumps) that new connections to ``fe`` reach."""
    hits: list[_Hit] = []
    if depth > MAX_DEPTH:
        return hits
    for rule in chain.rules:
        verdict, target = _rule_verdict(rule)
        scope, conditions = _rule_scope(rule, fe, local)
        if scope == "none":
            continue
        if verdict in ("drop", "reject"):
            hits.append(_Hit(rule.text, verdict, scope, conditions))
            if scope == "all":
                return hits
        elif verdict in ("jump", "goto") and target in table.chains:
            hits.extend(_walk(table, table.chains[target], fe, local, depth + 1))
            if verdict == "goto" and scope == "all":
                return hits
        elif verdict in ("accept", "return") and scope == "all":
            return hits
    if chain.is_base and chain.policy == "drop" and depth == 0:
        hits.append(_Hit(f"policy {chain.policy}", "policy drop", "all", []))
    return hits


def _rule_verdict(rule: NftRule) -> tuple[str | None, str | None]:
    for stmt in reversed(rule.expr):
        kind = next(iter(stmt))
        if kind in ("drop", "reject", "accept", "return"):
            return kind, None
        if kind in ("jump", "goto"):
            body = stmt[kind]
            return kind, body.get("target") if isinstance(body, dict) else None
    return None, None


def _rule_scope(rule: NftRule, fe: Frontend, local: set[str]) -> tuple[str, list[str]]:
    """Whether the rule's matches select all, some ("depends on ...") or none of fe's new connections."""
    from kubectl_proxydoctor.formats.nft_render import render_stmt

    unknown: list[str] = []
    for stmt in rule.expr:
        if "match" not in stmt:
            if "xt" in stmt:
                unknown.append(render_stmt(stmt))
            continue
        result = _match(stmt["match"], fe, local)
        if result is False:
            return "none", []
        if result is None:
            unknown.append(render_stmt(stmt))
    return ("some", unknown) if unknown else ("all", [])


def _match(m: dict, fe: Frontend, local: set[str]) -> bool | None:
    """Does a match hold for every new connection to the frontend (True), none (False), or it depends."""
    op, left, right = m.get("op", "=="), m.get("left"), m.get("right")
    values = _frontend_values(left, fe, local)
    if values is None:
        return None
    if isinstance(right, str) and right.startswith("@"):
        return None  # a named set of another table: cannot say without evaluating it
    hits = [_contains(right, v) for v in values]
    if any(h is None for h in hits):
        return None
    result = all(hits) if len(values) == 1 else (True if all(hits) else (None if any(hits) else False))
    if op == "!=":
        return None if result is None else not result
    if op not in ("==", "in"):
        return None
    return result


def _frontend_values(left: object, fe: Frontend, local: set[str]) -> list | None:
    if not isinstance(left, dict):
        return None
    kind, body = next(iter(left.items()))
    if kind == "payload":
        proto, fld = body.get("protocol"), body.get("field")
        if fld == "dport":
            if proto in ("tcp", "udp", "sctp") and proto != fe.protocol.lower():
                return ["<other protocol>"]
            return [fe.port]
        if fld == "daddr" and proto in ("ip", "ip6"):
            if fe.kind == "node-port":
                return sorted(local) or None
            return [fe.ip]
        return None
    if kind == "meta" and body.get("key") == "l4proto":
        return [fe.protocol.lower()]
    if kind == "ct" and body.get("key") == "state":
        return ["new"]
    if kind == "fib" and body.get("result") == "type" and body.get("flags") in ("daddr", ["daddr"]):
        return ["local"] if fe.kind == "node-port" else None
    return None


def _contains(right: object, value: object) -> bool | None:
    from kubectl_proxydoctor.formats.nft_model import part_matches
    from kubectl_proxydoctor.formats.nft_parse import key_part

    if value == "<other protocol>":
        return False
    items = right.get("set") if isinstance(right, dict) and "set" in right else \
        (right if isinstance(right, list) else [right])
    for item in items or []:
        try:
            part = key_part(item)
        except ProxyDoctorError:
            return None
        if isinstance(part, str) and isinstance(value, str) and not is_ip_text(value):
            if part.lower() == value.lower():
                return True
        elif part_matches(part, value):
            return True
    return False



def _local_addresses(ctx: CheckContext) -> set[str]:
    try:
        from kubectl_proxydoctor.nodeinfo import local_addresses

        return {a for a in local_addresses(ctx.snapshot) if not a.startswith(("127.", "::1", "fe80:"))}
    except ProxyDoctorError:
        return set()
