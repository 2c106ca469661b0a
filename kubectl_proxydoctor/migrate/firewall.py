"""Host firewalls that would drop Service traffic once kube-proxy stops adding ACCEPT rules.

iptables (and IPVS) mode adds ACCEPT rules for a restrictive host firewall: filter KUBE-FORWARD
accepts forwarded Service traffic and KUBE-NODEPORTS accepts healthCheckNodePorts. nftables mode
adds none, so a filter FORWARD/INPUT that drops by default (iptables) or an nftables table that
drops NodePort traffic (or forwards nothing by default) would break Services after the switch.
"""

from __future__ import annotations

from kubectl_proxydoctor.errors import ParseError
from kubectl_proxydoctor.migrate.result import CheckResult, MigrateContext, NodeInput, result
from kubectl_proxydoctor.migrate.services import NodePort, node_ports

IPTABLES_COMPAT_TABLES = {"filter", "nat", "mangle", "raw", "security"}  # iptables-nft's own tables
DNAT_PRIORITY = -100  # kube-proxy DNATs at dstnat; earlier prerouting chains see the NodePort itself
DROPS = ("drop", "reject")


def _port_values(right) -> list[tuple[int, int]]:
    """Port ranges an nft match's right side covers (int, {"range": [a, b]}, {"set": [...]})."""
    if isinstance(right, int):
        return [(right, right)]
    if isinstance(right, dict):
        if "range" in right and isinstance(right["range"], list) and len(right["range"]) == 2:
            a, b = right["range"]
            return [(int(a), int(b))] if isinstance(a, int) and isinstance(b, int) else []
        if "set" in right and isinstance(right["set"], list):
            return [r for item in right["set"] for r in _port_values(item)]
    return []


def _rule_drops_ports(rule) -> tuple[str | None, list[tuple[int, int]]] | None:
    """(protocol, port ranges) when an nft rule drops or rejects by destination port."""
    verdict = next((k for e in rule.expr if isinstance(e, dict) for k in e if k in DROPS), None)
    if verdict is None:
        return None
    for e in rule.expr:
        m = e.get("match") if isinstance(e, dict) else None
        if not isinstance(m, dict) or m.get("op", "==") not in ("==", "in"):
            continue
        left = m.get("left") or {}
        payload = left.get("payload") if isinstance(left, dict) else None
        if isinstance(payload, dict) and payload.get("field") == "dport":
            return payload.get("protocol"), _port_values(m.get("right"))
    return None


def _covered(ports: list[NodePort], proto: str | None, ranges: list[tuple[int, int]]) -> list[NodePort]:
    return [p for p in ports if (proto in (None, "th") or proto == p.protocol)
            and any(a <= p.node_port <= b for a, b in ranges)]


def _nft_findings(ruleset, ports: list[NodePort], health: list[NodePort]) -> tuple[list[str], list[str], int]:
    fails: list[str] = []
    warns: list[str] = []
    checked = 0
    for table in ruleset.tables.values():
        compat = table.family in ("ip", "ip6") and table.name in IPTABLES_COMPAT_TABLES
        if table.name == "kube-proxy" or compat:
            continue
        checked += 1
        for chain in table.base_chains():
            where = f"{table.label} chain {chain.name} ({chain.header()})"
            early = chain.hook == "ingress" or (
                chain.hook == "prerouting" and (chain.prio or 0) < DNAT_PRIORITY)
            if early:
                for rule in chain.rules:
                    hit = _rule_drops_ports(rule)
                    if hit:
                        dropped = _covered(ports, *hit)
                        if dropped:
                            shown = ", ".join(str(p) for p in dropped[:5])
                            fails.append(f"{where} has '{rule.text}': drops NodePort {shown} "
                                         "before kube-proxy's DNAT")
            if chain.policy == "drop" and chain.hook == "forward":
                fails.append(f"{where}: forwarded Service traffic to pods is dropped unless this chain "
                             "accepts it (kube-proxy adds no ACCEPT in nftables mode)")
            if chain.policy == "drop" and chain.hook == "input" and health:
                warns.append(f"{where}: healthCheckNodePorts " + ", ".join(str(p) for p in health[:5])
                             + " need an accept here")
    return fails, warns, checked


def _catch_all(rule) -> bool:
    """A DROP/REJECT that matches every packet (a comment does not narrow it)."""
    narrowing = [m for m in rule.matches or [] if m != "comment"]
    return (rule.target in ("DROP", "REJECT") and not narrowing and not any((
        rule.src, rule.dst, rule.proto, rule.in_iface, rule.out_iface, rule.dport, rule.sport, rule.ctstate,
        rule.match_sets, rule.mark, rule.unknown)))


def _iptables_findings(dumps, health: list[NodePort]) -> tuple[list[str], list[str], int]:
    fails: list[str] = []
    warns: list[str] = []
    checked = 0
    for dump in dumps:
        table = dump.ruleset.tables.get("filter")
        if table is None:
            continue
        checked += 1
        accepts = [r.text for r in dump.ruleset.rules("filter", "KUBE-FORWARD") if r.target == "ACCEPT"]
        for name in ("FORWARD", "INPUT"):
            chain = table.chains.get(name)
            if chain is None:
                continue
            blocks = [f"policy {chain.policy}"] if chain.policy in ("DROP", "REJECT") else []
            blocks += [f"rule {r.index} '{r.text}'" for r in chain.rules if _catch_all(r)]
            if not blocks:
                continue
            where = f"{dump.source} filter {name} ({', '.join(blocks)})"
            if name == "FORWARD":
                relied = f"; today kube-proxy's {len(accepts)} KUBE-FORWARD ACCEPT rules let it through" \
                    if accepts else ""
                fails.append(f"{where}: forwarded Service traffic is dropped without kube-proxy's "
                             f"KUBE-FORWARD ACCEPT rules{relied}")
            elif health:
                warns.append(f"{where}: healthCheckNodePorts " + ", ".join(str(p) for p in health[:5])
                             + " are accepted today only by kube-proxy's filter KUBE-NODEPORTS rules")
    return fails, warns, checked


def host_firewall(ctx: MigrateContext, node: NodeInput) -> list[CheckResult]:
    """Firewall rules that would drop NodePort / forwarded Service traffic in nftables mode."""
    check, title = "host-firewall", "Host firewall vs. Service traffic"
    if ctx.target != "nftables":
        return []
    ports = node_ports(ctx.cluster) if ctx.cluster is not None else []
    health = [p for p in ports if p.health_check]
    fails: list[str] = []
    warns: list[str] = []
    seen: list[str] = []
    text = node.snapshot.text("nft-ruleset.json")
    if text and text.strip():
        from kubectl_proxydoctor.formats.nft_parse import parse_ruleset_text

        try:
            ruleset = parse_ruleset_text(text)
        except ParseError as e:
            return [result(check, title, node.scope, "unknown", f"nft-ruleset.json cannot be read: {e}")]
        f, w, n = _nft_findings(ruleset, [p for p in ports if not p.health_check], health)
        fails += f
        warns += w
        seen.append(f"nft-ruleset.json: {n} nftables tables besides kube-proxy's and iptables-nft's checked")
    from kubectl_proxydoctor.modes.iptables.sources import dumps

    try:
        found = dumps(node.snapshot)
    except ParseError as e:
        return [result(check, title, node.scope, "unknown", f"an iptables dump cannot be read: {e}")]
    if found:
        f, w, n = _iptables_findings(found, health)
        fails += f
        warns += w
        seen.append(f"iptables: filter INPUT/FORWARD of {n} dumps checked")
    if not seen:
        return [result(check, title, node.scope, "unknown",
                       "neither nftables nor iptables rules were captured",
                       action="capture nft -j list ruleset and iptables-save")]
    action = ("make the host firewall accept Service traffic itself before switching: the whole NodePort "
              "range (30000-32767 by default) on input/prerouting, forwarded traffic to the pod CIDR "
              "(e.g. 'ct status dnat accept'), and healthCheckNodePorts")
    if fails:
        return [result(check, title, node.scope, "fail",
                       f"{len(fails)} firewall rules or policies would drop Service traffic in nftables mode",
                       fails + warns + seen, action)]
    if warns:
        return [result(check, title, node.scope, "warn",
                       "health-check NodePorts rely on kube-proxy's ACCEPT rules",
                       warns + seen, action)]
    if ctx.cluster is None:
        return [result(check, title, node.scope, "pass",
                       "no default-drop policy found (NodePort drops not checked: Services not read)",
                       seen)]
    return [result(check, title, node.scope, "pass", "no firewall rule or policy drops Service traffic",
                   seen)]
