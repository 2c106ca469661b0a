"""Rules kube-proxy did not write that jump into, or sit inside, kube-proxy's KUBE-* chains.

CNI NetworkPolicy engines, service meshes and hand-written rules hook into KUBE-SERVICES,
KUBE-MARK-MASQ and friends. Those chains do not exist in nftables mode (and IPVS mode's differ
from iptables mode's), so such rules silently stop working after the switch.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from kubectl_proxydoctor.errors import ParseError
from kubectl_proxydoctor.migrate.result import CheckResult, MigrateContext, NodeInput, result

if TYPE_CHECKING:
    from kubectl_proxydoctor.modes.iptables.parse import Rule, Ruleset

# chains kube-proxy (iptables or IPVS mode) or the kubelet create
OWNED = {
    "KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ",
    "KUBE-MARK-DROP", "KUBE-FORWARD", "KUBE-PROXY-FIREWALL", "KUBE-PROXY-CANARY", "KUBE-FIREWALL",
    "KUBE-KUBELET-CANARY", "KUBE-NODE-PORT", "KUBE-LOAD-BALANCER", "KUBE-LOAD-BALANCER-LOCAL",
    "KUBE-LOAD-BALANCER-FW", "KUBE-LOAD-BALANCER-SOURCE-CIDR", "KUBE-LOAD-BALANCER-SOURCE-IP",
    "KUBE-SOURCE-RANGES-FIREWALL", "KUBE-IPVS-FILTER", "KUBE-IPVS-OUT-FILTER", "KUBE-EXTERNAL-IP",
    "KUBE-EXTERNAL-IP-LOCAL",
}
_HASHED = re.compile(r"^KUBE-(SVC|SVL|EXT|FW|SEP|XLB)-[A-Z2-7]{16}$")
# comments kube-proxy writes (service-port comments start with "namespace/name:port")
_KUBE_COMMENTS = (
    re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[a-z0-9]([-a-z0-9.]*[a-z0-9])?:\S*( .*)?$"),
    re.compile(r"^[Kk]ubernetes "),
    re.compile(r"^(masquerade|pod|route LOCAL|masquerade LOCAL) traffic for \S+ "),
    # older kube-proxy versions (KUBE-XLB-* chains)
    re.compile(r"^Balancing rule \d+ for \S+$"),
    re.compile(r"^Redirect pods trying to reach external loadbalancer VIP to clusterIP$"),
    re.compile(r"^other traffic to \S+ will be dropped by KUBE-PROXY-FIREWALL$"),
    re.compile(r"^(block incoming localnet connections|kube-proxy firewall rules)$"),
)
# rules kube-proxy writes without a comment: (chain pattern, target)
_BARE = (
    (re.compile(r"^KUBE-MARK-(MASQ|DROP)$"), "MARK"),
    (re.compile(r"^KUBE-POSTROUTING$"), "RETURN"),
    (re.compile(r"^KUBE-POSTROUTING$"), "MARK"),
    (re.compile(r"^KUBE-FORWARD$"), "DROP"),  # --ctstate INVALID -j DROP
    (re.compile(r"^KUBE-(EXT|FW)-"), "KUBE-SVC-"),
    (re.compile(r"^KUBE-(EXT|FW)-"), "KUBE-SVL-"),
    (re.compile(r"^KUBE-(EXT|FW)-"), "KUBE-XLB-"),
    (re.compile(r"^KUBE-(EXT|FW)-"), "KUBE-EXT-"),
    (re.compile(r"^KUBE-(EXT|FW)-"), "KUBE-MARK-DROP"),
    (re.compile(r"^KUBE-(SOURCE-RANGES-FIREWALL|IPVS-FILTER|IPVS-OUT-FILTER|SERVICES)$"), "RETURN"),
    (re.compile(r"^KUBE-(SOURCE-RANGES-FIREWALL|IPVS-FILTER|IPVS-OUT-FILTER)$"), "DROP"),
    (re.compile(r"^KUBE-(IPVS-FILTER|IPVS-OUT-FILTER)$"), "REJECT"),
    (re.compile(r"^KUBE-(LOAD-BALANCER|NODE-PORT|EXTERNAL-IP)"), "KUBE-"),
    (re.compile(r"^KUBE-(LOAD-BALANCER|NODE-PORT)"), "RETURN"),
    (re.compile(r"^KUBE-FIREWALL$"), "DROP"),
    (re.compile(r"^KUBE-SERVICES$"), "KUBE-NODE-PORT"),  # IPVS: -m addrtype --dst-type LOCAL
)


def owned(chain: str) -> bool:
    """True for a chain kube-proxy (or the kubelet) creates."""
    return chain in OWNED or bool(_HASHED.match(chain))


def kube_proxy_wrote(rule) -> bool:
    """Whether a rule has the shape kube-proxy (or the kubelet) writes."""
    if rule.comment is not None:
        return any(p.match(rule.comment) for p in _KUBE_COMMENTS)
    target = rule.target or ""
    if rule.chain in ("INPUT", "OUTPUT") and target == "KUBE-FIREWALL":
        return True  # the kubelet's hook (no comment)
    return any(chain.match(rule.chain) and target.startswith(t) for chain, t in _BARE)


def hashed_chains(ruleset) -> tuple[set[str], set[str]]:
    """(KUBE-SVC/SVL chains, KUBE-SEP chains) whose names are kube-proxy's hashes of a service port
    (and, for KUBE-SEP, of the endpoint it DNATs to). Above 1000 endpoints kube-proxy writes these
    chains' rules without comments; the names still prove who wrote them (as ``check`` does)."""
    from kubectl_proxydoctor.modes.iptables import hashes
    from kubectl_proxydoctor.modes.iptables.view import Interpreter, port_name_string, split_endpoint

    nat = ruleset.tables.get("nat")
    services: set[str] = set()
    endpoints: set[str] = set()
    if nat is None:
        return services, endpoints
    interpreter = Interpreter(ruleset, "migrate")
    for chain in nat.chains.values():
        if not chain.name.startswith(("KUBE-SVC-", "KUBE-SVL-")):
            continue
        name = interpreter.name_for_chain(chain.name)
        if name is None:
            continue
        services.add(chain.name)
        for rule in chain.rules:
            sep = nat.chains.get(rule.target or "")
            if sep is None or not sep.name.startswith("KUBE-SEP-"):
                continue
            dnat = next((r.to_destination for r in sep.rules if r.target == "DNAT" and r.to_destination),
                        None)
            ep = split_endpoint(dnat) if dnat else None
            if ep is not None and hashes.endpoint_chain(port_name_string(name), name.protocol, ep.ip,
                                                        ep.port) == sep.name:
                endpoints.add(sep.name)
    return services, endpoints


def _hashed_rule(rule, services: set[str], endpoints: set[str]) -> bool:
    """An uncommented rule of kube-proxy's large-cluster mode in a chain proven by its hash."""
    target = rule.target or ""
    if rule.chain in endpoints:
        return target in ("KUBE-MARK-MASQ", "DNAT")
    if rule.chain in services:
        return target in endpoints or target == "KUBE-MARK-MASQ"
    return False


def foreign_rules(ruleset: Ruleset) -> list[tuple[str, Rule]]:
    """(how, rule) for every rule that jumps into or sits in a KUBE-* chain kube-proxy did not write."""
    out: list[tuple[str, Rule]] = []
    services, endpoints = hashed_chains(ruleset)
    for table in ruleset.tables.values():
        for chain in table.chains.values():
            for rule in chain.rules:
                inside = owned(chain.name)
                into = bool(rule.target and owned(rule.target))
                if not (inside or into) or kube_proxy_wrote(rule):
                    continue
                if rule.comment is None and table.name == "nat" and _hashed_rule(rule, services, endpoints):
                    continue
                how = f"inserted into {chain.name}" if inside else f"jumps into {rule.target}"
                out.append((how, rule))
    return out


def third_party_rules(ctx: MigrateContext, node: NodeInput) -> list[CheckResult]:
    """Rules of other components hooked into kube-proxy's KUBE-* chains, each named."""
    check, title = "third-party-rules", "Third-party rules in KUBE-* chains"
    from kubectl_proxydoctor.modes.iptables.sources import dumps

    try:
        found = dumps(node.snapshot)
    except ParseError as e:
        return [result(check, title, node.scope, "unknown", f"an iptables dump cannot be read: {e}")]
    if not found:
        if node.snapshot.has("iptables-save.txt") or node.snapshot.has("iptables-nft-save.txt"):
            return [result(check, title, node.scope, "pass", "the iptables dumps hold no rules")]
        return [result(check, title, node.scope, "unknown", "no iptables dump was captured",
                       action="capture iptables-save (both backends)")]
    hits = []
    for dump in found:
        for how, rule in foreign_rules(dump.ruleset):
            hits.append(f"{dump.source} {rule.table} {rule.chain} rule {rule.index} ({how}): {rule.text}")
    kube = sum(1 for d in found for t, c in d.ruleset.kube_chains())
    seen = f"{len(found)} iptables dumps, {kube} KUBE-* chains checked"
    if not kube:
        return [result(check, title, node.scope, "pass", "there are no KUBE-* chains to hook into", [seen])]
    if hits:
        dest = "nftables mode" if ctx.target == "nftables" else "iptables mode (IPVS mode's chains go away)"
        return [result(check, title, node.scope, "fail",
                       f"{len(hits)} rules kube-proxy did not write hook into its KUBE-* chains; "
                       f"they stop working in {dest}", hits[:20] + [seen],
                       "find the owner of each rule (CNI NetworkPolicy engine, service mesh, hostPort "
                       "plugin, hand-written) and move it to its own chains/table, or confirm the component "
                       f"supports kube-proxy {ctx.target} mode, before switching")]
    return [result(check, title, node.scope, "pass", "every rule in or into KUBE-* chains is kube-proxy's",
                   [seen])]
