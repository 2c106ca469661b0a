"""When IPVS-mode traffic is masqueraded, read from kube-proxy's nat rules (the ipset matches).

kube-proxy marks traffic for SNAT in nat KUBE-SERVICES by ipset: KUBE-CLUSTER-IP (``! -s
<clusterCIDR>``, or always with masqueradeAll), KUBE-EXTERNAL-IP, KUBE-LOAD-BALANCER (chain
KUBE-LOAD-BALANCER, -LOCAL entries return first) and KUBE-NODE-PORT-<proto> (chain
KUBE-NODE-PORT). Hairpin traffic (a pod reaching itself) is masqueraded via KUBE-LOOP-BACK.
"""

from __future__ import annotations

from kubectl_proxydoctor.modes.iptables.parse import Rule, Ruleset
from kubectl_proxydoctor.modes.ipvs.ipset import set_name

MARK_MASQ = "KUBE-MARK-MASQ"
HAIRPIN = "; hairpin (pod to itself) always, via KUBE-LOOP-BACK"
SET_FOR_KIND = {"cluster-ip": "KUBE-CLUSTER-IP", "external-ip": "KUBE-EXTERNAL-IP",
                "load-balancer": "KUBE-LOAD-BALANCER"}
NODE_PORT_SETS = {"TCP": "KUBE-NODE-PORT-TCP", "UDP": "KUBE-NODE-PORT-UDP",
                  "SCTP": "KUBE-NODE-PORT-SCTP-HASH"}


def _condition(rule: Rule) -> str:
    if rule.src:
        return f"when the source is {'not ' if rule.is_neg('src') else ''}in {rule.src}"
    return "always"


def _marks_in_chain(ruleset: Ruleset, chain: str) -> str | None:
    """How a chain reached from the set rule marks: the first unconditional KUBE-MARK-MASQ."""
    for rule in ruleset.rules("nat", chain):
        if rule.target == MARK_MASQ:
            return _condition(rule) if not rule.match_sets else "for entries not in the -LOCAL set"
    return None


def describe(ruleset: Ruleset | None, kind: str, policy: str, protocol: str, family: int = 4) -> str:
    """One line: when new connections to this kind of frontend are masqueraded, with the rule."""
    if policy == "local":
        return "never for external clients (traffic policy Local keeps the source)" + HAIRPIN
    name = NODE_PORT_SETS.get(protocol.upper(), "") if kind == "node-port" else SET_FOR_KIND.get(kind, "")
    name = set_name(name, family) if name else name
    if ruleset is None or ruleset.chain("nat", "KUBE-SERVICES") is None:
        return "unknown (no iptables dump with kube-proxy's nat rules)"
    table = ruleset.tables.get("nat")
    for rule in table.rules() if table else []:
        if not rule.match_sets or not any(s[0] == name and not s[2] for s in rule.match_sets):
            continue
        if rule.target == MARK_MASQ:
            return f"{_condition(rule)} (nat {rule.chain} rule {rule.index}: {name})" + HAIRPIN
        if rule.target and ruleset.chain("nat", rule.target) is not None:
            how = _marks_in_chain(ruleset, rule.target)
            if how:
                return f"{how} (nat {rule.target} via {name})" + HAIRPIN
    return f"no KUBE-MARK-MASQ rule for {name}: only hairpin traffic" if name else "unknown"
