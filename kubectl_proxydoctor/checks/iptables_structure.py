"""Structural iptables checks, independent of the API: the rules judged against kube-proxy's layout.

- backend-leftover: KUBE-SERVICES with service rules in both the legacy and the nf_tables backend.
- foreign-rule: rules in kube-proxy's chains that kube-proxy did not write, and other chains that
  jump into kube-proxy's internal chains (they break when kube-proxy changes or leaves).
- unreferenced-chain / missing-chain: KUBE-SVC/SVL/EXT/FW/SEP chains nothing jumps to; jumps to
  chains that do not exist.
- uneven-probabilities: statistic rules that do not split new connections evenly.
- version-leftover / mode-leftover: KUBE-XLB-*, KUBE-MARK-DROP (older kube-proxy) and IPVS-mode
  chains in an iptables-mode dump.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from itertools import chain as _chain
from typing import TYPE_CHECKING, cast

from kubectl_proxydoctor.checks import CheckContext, check
from kubectl_proxydoctor.clip import clip
from kubectl_proxydoctor.kube_proxy_pod import for_context
from kubectl_proxydoctor.model import Finding, ProgrammedView, ServicePortName

if TYPE_CHECKING:
    from kubectl_proxydoctor.modes.iptables.parse import Ruleset

_SERVICE_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-")
_FRONTEND_COMMENT = re.compile(r"^\S+/\S+ (cluster IP|external IP|loadbalancer IP)$")
_NO_EP_COMMENT = re.compile(r"^\S+/\S+ has no (local )?endpoints$")
_NODEPORTS_COMMENT = "kubernetes service nodeports; NOTE: this must be the last rule in this chain"
_IPVS_CHAINS = {"KUBE-LOAD-BALANCER", "KUBE-NODE-PORT", "KUBE-LOOP-BACK", "KUBE-IPVS-FILTER",
                "KUBE-IPVS-OUT-FILTER", "KUBE-SOURCE-RANGES-FIREWALL", "KUBE-FIRE-WALL",
                "KUBE-LOAD-BALANCER-LOCAL", "KUBE-LOAD-BALANCER-FW", "KUBE-LOAD-BALANCER-MASQ"}
_TERMINAL = {"ACCEPT", "DROP", "REJECT", "RETURN", "DNAT", "REDIRECT", "SNAT", "MASQUERADE"}
_KUBE_OWNED = {"KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ",
               "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD", "KUBE-PROXY-FIREWALL"}
_MODE = "iptables"
chain_from_iterable = _chain.from_iterable


def _views(ctx: CheckContext) -> list[ProgrammedView]:
    views = [v for v in ctx.views if v.mode == "iptables"]
    if views or ctx.views or ctx.decision is not None:  # a NodeState's views are all there is
        return views
    from kubectl_proxydoctor.modes.iptables import interpret

    return interpret(ctx.snapshot)


def _ruleset(view: ProgrammedView) -> Ruleset:
    """The parsed dump an iptables view was built from (interpret_ruleset keeps it in ``raw``)."""
    return cast("Ruleset", view.raw)


def _iptables_layout(view: ProgrammedView) -> bool:
    """True when this dump looks like kube-proxy's iptables mode (not IPVS's helper chains)."""
    tables = _ruleset(view).tables.values()
    if not any(name in t.chains for t in tables for name in _IPVS_CHAINS):
        return True  # (a lookup per IPVS chain name: no pass over a 10k-service dump's chains)
    return any(name.startswith("KUBE-SVC-") for t in tables for name in t.chains)


def _applies(ctx: CheckContext, view: ProgrammedView) -> bool:
    mode = ctx.running_mode()
    if mode and mode not in ("iptables", "unknown"):
        return False  # another mode's leftovers are reported as mode-leftover elsewhere
    return _iptables_layout(view)


def _name(view: ProgrammedView, chain: str) -> ServicePortName | None:
    from kubectl_proxydoctor.modes.iptables.view import chain_owner

    return chain_owner(_ruleset(view), chain)


def _sep_name(view: ProgrammedView, chain: str) -> ServicePortName | None:
    """The service port of a KUBE-SEP chain: by its rules' comment, else by the chain hash."""
    from kubectl_proxydoctor.modes.iptables import hashes
    from kubectl_proxydoctor.modes.iptables.view import parse_port_name, port_name_string

    rules = _ruleset(view).rules("nat", chain)
    proto = next((r.proto for r in rules if r.proto), "tcp")
    for rule in rules:
        if rule.comment:
            name = parse_port_name(rule.comment, proto)
            if name:
                return name
    dnat = next((r.to_destination for r in rules if r.to_destination), None)
    if dnat:
        host, _, port = dnat.rpartition(":")
        for (name, _fam) in view.ports:
            try:
                if hashes.endpoint_chain(port_name_string(name), name.protocol, host.strip("[]"),
                                         int(port)) == chain:
                    return name
            except ValueError:
                return None
    return None


def _finding(code: str, severity: str, message: str, name: ServicePortName | None, evidence: list[str],
             fix: str) -> Finding:
    if name is not None:
        return Finding.for_port(name, code=code, severity=severity, message=message, evidence=evidence,
                                fix=fix, mode=_MODE)
    return Finding(code=code, severity=severity, message=message, evidence=evidence,  # type: ignore[arg-type]
                   fix=fix, mode=_MODE)


# -- backend-leftover ------------------------------------------------------------------------------


def _hooks(rs, chain: str) -> list[str]:
    return [h for h in ("PREROUTING", "OUTPUT") if any(r.target == chain for r in rs.rules("nat", h))]


def _backend_score(view: ProgrammedView) -> tuple:
    """Which backend kube-proxy writes: the one with its full layout, then the most service ports."""
    rs = _ruleset(view)
    hallmarks = sum(1 for t, c in (("mangle", "KUBE-PROXY-CANARY"), ("nat", "KUBE-POSTROUTING"),
                                   ("nat", "KUBE-NODEPORTS"), ("filter", "KUBE-FORWARD"),
                                   ("filter", "KUBE-PROXY-FIREWALL"), ("mangle", "KUBE-IPTABLES-HINT"))
                    if rs.chain(t, c) is not None)
    return hallmarks, len(view.ports), "legacy" not in view.source


@check("iptables-backend-leftover")
def backend_leftover(ctx: CheckContext) -> Iterable[Finding]:
    """KUBE-SERVICES programmed in both the legacy and the nf_tables backend."""
    by_family: dict[int, list[ProgrammedView]] = {}
    for view in _views(ctx):
        rs = _ruleset(view)
        if rs is not None and rs.rules("nat", "KUBE-SERVICES") and _iptables_layout(view):
            by_family.setdefault(rs.family, []).append(view)
    for views in by_family.values():
        if len({v.source for v in views}) < 2:
            continue
        active = max(views, key=_backend_score)
        active_backend = "nf_tables" if "nft" in active.source else "legacy"
        for stale in views:
            if stale is active:
                continue
            yield from _leftover_findings(ctx, stale, active, active_backend)


def _backend_leftover_fix(ctx: CheckContext, binary: str, active_backend: str) -> str:
    """Keep a copy, then the exact unhook / flush / delete commands for the stale backend's chains."""
    from kubectl_proxydoctor.proxy_mode import backend_cleanup, cleanup_binary

    left = backend_cleanup(ctx.snapshot, binary)
    command = cleanup_binary(ctx.snapshot, binary)  # that backend's own binary, never a bare iptables
    steps = [f"{command}-save > /tmp/{command}.rules", *(left.commands if left else [])]
    kept = "".join(f" {reason}." for reason in (left.kept if left else []))
    return (f"Remove the stale {binary} rules (a copy first, then unhook, flush and delete each chain): "
            f"{'; '.join(steps)}.{kept} Then make every tool on the node (kubelet, CNI, kube-proxy image) "
            f"use the {active_backend} backend.")


def _leftover_findings(ctx: CheckContext, stale: ProgrammedView, active: ProgrammedView,
                       active_backend: str) -> Iterable[Finding]:
    rs = _ruleset(stale)
    hooks = _hooks(rs, "KUBE-SERVICES")
    hooked = f"hooked from {'/'.join(hooks)}" if hooks else "not hooked from PREROUTING/OUTPUT"
    counters = [f"{c.name} [{c.packets}:{c.bytes}]" for c in (rs.chain("nat", h) for h in hooks)
                if c is not None and c.packets]
    seen = f"; its nat {', '.join(counters)} counters show it sees traffic" if counters else ""
    severity = "error" if hooks else "warning"
    why = ("the kernel runs every nat table hooked at PREROUTING/OUTPUT priority -100 in registration "
           "order and stops at the first that DNATs a new connection, so whichever backend registered "
           "first (often the stale one, loaded at boot) takes the traffic" if hooks else
           "it is not hooked, so it is inert until something jumps to it")
    fix = _backend_leftover_fix(ctx, stale.source, active_backend)
    if not stale.ports:
        yield _finding("backend-leftover", severity,
                       f"{stale.source} nat ({hooked}) still has KUBE-SERVICES rules while kube-proxy "
                       f"writes the {active_backend} backend ({active.source}); {why}{seen}",
                       None, [r.text for r in rs.rules("nat", "KUBE-SERVICES")][:20], fix)
        return
    for (name, _fam), port in sorted(stale.ports.items()):
        for fe in port.frontends:
            jump = next((line for line in fe.evidence if line.startswith("-A KUBE-")), "")
            chain = jump.rsplit(" -j ", 1)[-1] if " -j " in jump else "?"
            targets = ", ".join(str(e) for e in fe.endpoints) or (fe.no_endpoints or "no endpoints")
            active_port = active.port(name, port.family)
            active_eps = active_port.endpoints if active_port else []
            same = active_port is not None and set(active_eps) == set(port.endpoints)
            compare = ("same endpoints as the active backend" if same else
                       f"the {active_backend} backend kube-proxy uses has "
                       f"{', '.join(map(str, active_eps)) or 'no such service port'}")
            yield _finding(
                "backend-leftover", severity,
                f"{stale.source} nat ({hooked}): KUBE-SERVICES {fe.address} -> {chain} -> {targets} "
                f"(stale copy; {compare}); {why}{seen}",
                name, fe.evidence[:12], fix)


# -- foreign rules --------------------------------------------------------------------------------


def _kube_proxy_wrote(rule) -> bool:
    """Does this rule have a shape kube-proxy's iptables proxier writes in this chain?"""
    chain, target, comment = rule.chain, rule.target or "", rule.comment or ""
    if rule.table == "nat":
        if chain == "KUBE-SERVICES":
            if target.startswith(_SERVICE_PREFIXES):
                return bool(_FRONTEND_COMMENT.match(comment)) and bool(rule.dst and rule.dport)
            return target == "KUBE-NODEPORTS" and comment == _NODEPORTS_COMMENT
        if chain == "KUBE-NODEPORTS":
            return target.startswith(("KUBE-EXT-", "KUBE-SVC-")) and bool(rule.dport)
        if chain == "KUBE-POSTROUTING":
            return target in ("RETURN", "MARK", "MASQUERADE")
        if chain == "KUBE-MARK-MASQ":
            return target == "MARK"
        if chain.startswith(("KUBE-SVC-", "KUBE-SVL-")):
            return target == "KUBE-MARK-MASQ" or target.startswith("KUBE-SEP-")
        if chain.startswith("KUBE-EXT-"):
            return target == "KUBE-MARK-MASQ" or target.startswith(("KUBE-SVC-", "KUBE-SVL-"))
        if chain.startswith("KUBE-FW-"):
            return target == "" or target.startswith(("KUBE-EXT-", "KUBE-SVC-", "KUBE-SVL-"))
        if chain.startswith("KUBE-SEP-"):
            return target in ("KUBE-MARK-MASQ", "DNAT")
        return True
    if rule.table == "filter":
        if chain in ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES"):
            return target in ("REJECT", "DROP") and bool(_NO_EP_COMMENT.match(comment))
        if chain == "KUBE-PROXY-FIREWALL":
            return target == "DROP" and "traffic not accepted by KUBE-FW-" in comment
        if chain == "KUBE-NODEPORTS":
            return target == "ACCEPT" and comment.endswith("health check node port")
        if chain == "KUBE-FORWARD":
            return target in ("ACCEPT", "DROP")
    return True


def _shadowed(view: ProgrammedView, rule) -> tuple[ServicePortName | None, str]:
    """The kube-proxy service rule a foreign rule overlaps and comes before, if any."""
    rs = _ruleset(view)
    for later in rs.rules(rule.table, rule.chain)[rule.index:]:
        if not _kube_proxy_wrote(later) or not later.comment:
            continue
        if rule.dst and later.dst and rule.dst != later.dst:
            continue
        if rule.dport and later.dport and rule.dport != later.dport:
            continue
        if rule.proto and later.proto and rule.proto != later.proto:
            continue
        if rule.neg:
            continue
        from kubectl_proxydoctor.modes.iptables.view import parse_port_name

        name = parse_port_name(later.comment.split(" ", 1)[0], later.proto or "tcp")
        return name, later.comment
    return None, ""


def _effect(rule, address: str) -> str:
    target = rule.target or ""
    if target == "ACCEPT" and rule.table == "nat":
        return f"{address} is ACCEPTed without DNAT (requests time out)"
    if target in ("DROP", "REJECT"):
        return f"{address} is {target}ed before kube-proxy's rule"
    if target == "RETURN":
        return f"{address} leaves the chain before kube-proxy's rule (not DNATed)"
    if target == "DNAT":
        return f"{address} is DNATed to {rule.to_destination} instead of the service's endpoints"
    return f"{address} is handled by it first"


@check("iptables-foreign-rule")
def foreign_rules(ctx: CheckContext) -> Iterable[Finding]:
    """Rules in kube-proxy's chains it did not write; other chains jumping into kube-proxy's."""
    for view in _views(ctx):
        rs = _ruleset(view)
        if rs is None or not _applies(ctx, view):
            continue
        prefix = f"[{view.source}] " if "legacy" in view.source else ""
        for table in rs.tables.values():
            # a KUBE-SEP chain whose targets are all kube-proxy's (nearly every chain of a big node):
            # nothing to look at, decided from its targets alone
            seps = _SEP_TARGETS if table.name == "nat" else frozenset()
            for name, chain in table.chains.items():
                if name.startswith("KUBE-SEP-") and seps.issuperset(chain.targets):
                    continue
                if name in _KUBE_OWNED or name.startswith(_SERVICE_PREFIXES):
                    yield from _foreign_in_kube_chain(view, chain, prefix, table.name)
                elif not chain.builtin and not name.startswith("KUBE-"):
                    yield from _foreign_chain_jumping_in(view, table.name, chain, prefix)


_SEP_TARGETS = frozenset({"KUBE-MARK-MASQ", "DNAT"})


def _suspects(table: str, chain) -> list:
    """The rules of a kube-proxy chain that may not be kube-proxy's: in the per-service nat chains
    (nearly every rule of a big node) the targets _kube_proxy_wrote accepts are filtered out here in
    one pass, the rest get the full test."""
    if table != "nat":
        return chain.rules
    if chain.name.startswith("KUBE-SEP-"):  # (from the rules' targets: no Rule is built for the rest)
        return [chain.rule(i) for i, t in enumerate(chain.targets) if t not in _SEP_TARGETS]
    if chain.name.startswith(("KUBE-SVC-", "KUBE-SVL-")):
        return [chain.rule(i) for i, t in enumerate(chain.targets)
                if t != "KUBE-MARK-MASQ" and not (t or "").startswith("KUBE-SEP-")]
    return chain.rules


def _foreign_in_kube_chain(view: ProgrammedView, chain, prefix: str, table: str) -> Iterable[Finding]:
    suspects = _suspects(table, chain)
    if not suspects:
        return
    unknown = {u.text for u in view.unknown_layout}  # kube-proxy's shape, unknown layout: not foreign
    for rule in suspects:
        if _kube_proxy_wrote(rule) or rule.text in unknown:
            continue
        name, shadowed = _shadowed(view, rule)
        address = f"{rule.dst.split('/')[0] if rule.dst else '*'}:{rule.dport or '*'}"
        terminal = (rule.target or "") in _TERMINAL
        where = f"{rule.table} {chain.name} rule {rule.index}"
        if name is not None and terminal:
            message = (f"{prefix}{where} was not written by kube-proxy: '{clip(rule.text)}' - it is ahead of "
                       f"kube-proxy's '{shadowed}' rule, so {_effect(rule, address)}")
            severity = "error"
        else:
            message = (f"{prefix}{where} was not written by kube-proxy: '{clip(rule.text)}'"
                       + (f" (ahead of kube-proxy's '{shadowed}' rule)" if shadowed else ""))
            severity = "warning"
        yield _finding(
            "foreign-rule", severity, message, name, [rule.text],
            f"Delete it ({_delete_by_spec(view.source, rule)}) and change whatever added it to use its "
            "own chain hooked outside kube-proxy's: kube-proxy rewrites its chains on every sync, so the "
            "rule also disappears (and reappears) unpredictably.")


MAX_SPEC = 1000  # a longer rule is named by position (with the command that confirms it)


def _delete_by_spec(binary: str, rule) -> str:
    """The command deleting exactly this rule by its spec (positions move as kube-proxy syncs)."""
    import shlex

    from kubectl_proxydoctor.modes.iptables.parse import tokenize

    words = tokenize(rule.text, "rule", rule.line)
    command = shlex.join([binary, "-t", rule.table, "-D", *words[1:]])
    if len(command) <= MAX_SPEC:
        return f"`{command}`"
    return (f"its spec is {len(rule.text)} characters long: confirm it is rule {rule.index} with "
            f"`{binary} -t {rule.table} -S {rule.chain} | sed -n {rule.index + 1}p | cut -c1-200`, then "
            f"`{binary} -t {rule.table} -D {rule.chain} {rule.index}`")


def _reached_from(rs, table: str, chain: str, depth: int = 0) -> tuple[list[str], list[str]]:
    """(builtin chains, intermediate chains) that jump to this chain."""
    builtins: list[str] = []
    via: list[str] = []
    if depth > 5:
        return builtins, via
    for other in rs.tables[table].chains.values():
        if chain in other.targets:  # (the rules' targets: no Rule is built for a big node's chains)
            if other.builtin:
                builtins.append(other.name)
            else:
                via.append(other.name)
                b, v = _reached_from(rs, table, other.name, depth + 1)
                builtins.extend(b)
                via.extend(v)
    return list(dict.fromkeys(builtins)), list(dict.fromkeys(via))


def _foreign_chain_jumping_in(view: ProgrammedView, table: str, chain, prefix: str) -> Iterable[Finding]:
    rs = _ruleset(view)
    jumps = [r for r in chain.rules if (r.target or "").startswith("KUBE-")]
    if not jumps:
        return
    for target in dict.fromkeys(r.target for r in jumps):
        rules = [r for r in jumps if r.target == target]
        builtins, via = _reached_from(rs, table, chain.name)
        kind = "CNI portmap hostPort chain, " if chain.name.startswith("CNI-DN-") else ""
        reach = (f"reached from {'/'.join(builtins)}" + (f" via {', '.join(via)}" if via else "")
                 if builtins else "not reached from any built-in chain")
        dnat = [r for r in chain.rules if r.target == "DNAT" and r.to_destination]
        what = ""
        if dnat:
            r = dnat[0]
            port = f"{(r.proto or '').lower()} dport {r.dport} " if r.dport else ""
            what = f", {port}-> DNAT {r.to_destination}"
        rule_word = "rule" if len(rules) == 1 else "rules"
        yield _finding(
            "foreign-rule", "warning",
            f"{prefix}{table} chain {chain.name} ({kind}{reach}{what}) jumps to kube-proxy's {target} "
            f"({len(rules)} {rule_word})",
            None, [r.text for r in rules] + [r.text for r in dnat],
            f"{chain.name} depends on kube-proxy's internal chain {target}: it breaks if kube-proxy "
            "changes mode (nftables and IPVS modes do not have it) or renames it. Give that component "
            "its own masquerade rule (e.g. CNI portmap `externalSetMarkChain` unset / its own mark chain).")


# -- chain structure ------------------------------------------------------------------------------

_BUILTIN_TARGETS = {"ACCEPT", "DROP", "REJECT", "RETURN", "DNAT", "SNAT", "MASQUERADE", "MARK", "LOG",
                    "REDIRECT", "CONNMARK", "CT", "NOTRACK", "TRACE", "NFLOG", "AUDIT", "CHECKSUM",
                    "TCPMSS", "TPROXY", "CLASSIFY", "DSCP", "TOS", "TTL", "HL", "NFQUEUE", "QUEUE",
                    "SET", "CLUSTERIP", "ULOG", "IDLETIMER", "LED", "SECMARK", "CONNSECMARK", "HMARK",
                    "NETMAP", "SYNPROXY", "TEE", "RATEEST", "ECN", "NPT", "DNPT", "SNPT", "COUNTER"}


@check("iptables-chain-structure")
def chain_structure(ctx: CheckContext) -> Iterable[Finding]:
    """KUBE-SVC/SVL/EXT/FW/SEP chains nothing jumps to, and jumps to chains that do not exist."""
    for view in _views(ctx):
        rs = _ruleset(view)
        if rs is None or not _applies(ctx, view):
            continue
        prefix = f"[{view.source}] "
        for table in rs.tables.values():
            # every rule's target (no Rule is built)
            referenced: set[str | None] = set(chain_from_iterable([c.targets for c in table.chains.values()]))
            unreferenced = {n for n in table.chains.keys() - referenced if n.startswith(_SERVICE_PREFIXES)}
            for chain in table.chains.values() if unreferenced else ():
                if chain.name in unreferenced:
                    name = _sep_name(view, chain.name) if chain.name.startswith("KUBE-SEP-") else \
                        _name(view, chain.name)
                    yield _unreferenced(ctx, view, table, chain, name, prefix)
            if not any(t and t.startswith("KUBE-") and t not in _BUILTIN_TARGETS
                       for t in referenced - table.chains.keys()):
                continue  # no jump to a missing chain: no second pass over the rules
            jumps = ((c, i, t) for c in table.chains.values() for i, t in enumerate(c.targets))
            for chain, i, target in jumps:
                if (target and target not in table.chains and target not in _BUILTIN_TARGETS
                        and target.startswith("KUBE-")):
                    rule = chain.rule(i)
                    yield _finding(
                        "missing-chain", "error",
                        f"{prefix}{rule.label} jumps to {target}, which does not exist in the "
                        f"{table.name} table",
                        _name(view, target), [rule.text],
                        "The dump is inconsistent (hand-edited rules, or a partial restore); restart "
                        "kube-proxy so it rewrites its chains.")


def _flushed_parent(table, chain: str, name: ServicePortName | None) -> str | None:
    """The chain that should jump to ``chain`` and was flushed (holds no such jumps), if any."""
    from kubectl_proxydoctor.modes.iptables import hashes

    if chain.startswith("KUBE-SEP-"):
        if name is None:
            return None
        port_name = hashes.port_name_string(name.namespace, name.name, name.port)
        for prefix in ("KUBE-SVC-", "KUBE-SVL-"):
            parent = table.chains.get(hashes.service_chain(port_name, name.protocol, prefix))
            if parent is not None and not any((r.target or "").startswith("KUBE-SEP-") for r in parent.rules):
                return parent.name
        return None
    for parent_name in ("KUBE-SERVICES", "KUBE-NODEPORTS"):
        parent = table.chains.get(parent_name)
        if parent is not None and not parent.rules:
            return parent_name
    return None


def _unreferenced(ctx: CheckContext, view: ProgrammedView, table, chain, name: ServicePortName | None,
                  prefix: str) -> Finding:
    """An unreferenced service chain: a flushed parent is the root cause, else an earlier sync."""
    head = f"{prefix}{table.name} chain {chain.name} ({len(chain.rules)} rules) is not jumped to by any rule"
    evidence = [f":{chain.name} - [{chain.packets}:{chain.bytes}]"] + [r.text for r in chain.rules][:5]
    parent = _flushed_parent(table, chain.name, name)
    if parent is not None:
        restart = for_context(ctx).restart
        return _finding(
            "unreferenced-chain", "info",
            f"{head}: its parent chain {parent} was flushed (it holds no rule jumping to it), which is "
            "the root cause",
            name, [*evidence, f":{parent} ({len(table.chains[parent].rules)} rules)"],
            f"Goes away when kube-proxy rewrites {parent}: restart it (`{restart}`) and stop whatever "
            "flushes kube-proxy's chains (a host firewall reload, iptables -F, config management).")
    return _finding(
        "unreferenced-chain", "info",
        f"{head}: left over from an earlier sync (kube-proxy deletes such chains later in large clusters)",
        name, evidence,
        "Harmless by itself; if it stays, check that kube-proxy is syncing (its next full sync deletes "
        "unused KUBE-* chains).")


@check("iptables-probabilities")
def probabilities(ctx: CheckContext) -> Iterable[Finding]:
    """Statistic rules in KUBE-SVC/SVL chains must split new connections evenly over endpoints."""
    for view in _views(ctx):
        rs = _ruleset(view)
        if rs is None or not _applies(ctx, view) or "nat" not in rs.tables:
            continue
        for chain in rs.tables["nat"].chains.values():
            if not chain.name.startswith(("KUBE-SVC-", "KUBE-SVL-")):
                continue
            lb = _load_balancing(chain)
            if not lb:
                continue
            n = len(lb)
            problems: list[str] = []
            remaining = 1.0
            effective: list[float] = []
            for i, (index, target, probability, _text) in enumerate(lb):
                want = 1.0 / (n - i)
                got = probability if probability is not None else 1.0
                if not abs(got - want) <= 1e-6:  # (also a probability that is not a number)
                    problems.append(f"rule {index} -> {target}: p={got:.11f}, want {want:.11f}")
                effective.append(remaining * got)
                remaining -= remaining * got
            if remaining > 1e-6:
                problems.append(f"{remaining:.1%} of new connections fall through without DNAT")
            if not problems:
                continue
            name = _name(view, chain.name)
            split = ", ".join(f"{e:.1%}" for e in effective)
            yield _finding(
                "uneven-probabilities", "warning" if remaining <= 1e-6 else "error",
                f"[{view.source}] nat {chain.name}: {n} endpoint rules do not split new connections "
                f"evenly (effective {split}): {'; '.join(problems)}",
                name, [text for *_, text in lb][:20],
                "kube-proxy writes probability 1/(n-i) for the i-th of n endpoints; these rules were "
                "edited or half-synced. Restart kube-proxy (or wait for its next full sync).")


def _load_balancing(chain) -> list[tuple[int, str, float | None, str]]:
    """(position, target, probability, text) of a service chain's jumps to endpoint chains (not the
    affinity ones), from the rules' targets and, for plain rules, their words (no Rule is built)."""
    items = chain.items
    probabilities = chain.probabilities or {}
    out = []
    for i, target in enumerate(chain.targets):
        if target and target.startswith("KUBE-SEP-"):
            item = items[i]
            if isinstance(item, str):
                out.append((i + 1, target, probabilities.get(i), item))
            elif item.recent_mode != "rcheck":
                out.append((item.index, target, item.probability, item.text))
    return out


@check("iptables-stale-layout")
def stale_layout(ctx: CheckContext) -> Iterable[Finding]:
    """KUBE-* chains of other kube-proxy versions (KUBE-XLB-*, KUBE-MARK-DROP) or of IPVS mode."""
    for view in _views(ctx):
        rs = _ruleset(view)
        if rs is None or not _applies(ctx, view):
            continue
        kube = [(t.name, c) for t in rs.tables.values() for c in t.chains  # not every KUBE-* chain
                if c in _IPVS_CHAINS or c.startswith("KUBE-XLB-") or c == "KUBE-MARK-DROP"]
        old = [(t, c) for t, c in kube if c.startswith("KUBE-XLB-") or c == "KUBE-MARK-DROP"]
        if old:
            yield _finding(
                "version-leftover", "warning",
                f"[{view.source}] chains from an older kube-proxy: "
                + ", ".join(f"{t} {c} ({len(rs.rules(t, c))} rules)" for t, c in old[:10])
                + (f" and {len(old) - 10} more" if len(old) > 10 else ""),
                None, [f"{t} :{c}" for t, c in old][:20],
                "kube-proxy >= 1.24 no longer writes KUBE-XLB-* (now KUBE-EXT-/KUBE-SVL-) or KUBE-MARK-DROP; "
                "delete them once nothing jumps to them (`iptables -t nat -X CHAIN`).")
        ipvs = [(t, c) for t, c in kube if c in _IPVS_CHAINS]
        if ipvs:
            yield _finding(
                "mode-leftover", "warning",
                f"[{view.source}] IPVS-mode chains on an iptables-mode node: "
                + ", ".join(f"{t} {c}" for t, c in ipvs),
                None, [f"{t} :{c}" for t, c in ipvs],
                "Left by kube-proxy in IPVS mode; run `kube-proxy --cleanup` with the old config, or "
                "delete them by hand, and remove the kube-ipvs0 interface and IPVS virtual servers.")
