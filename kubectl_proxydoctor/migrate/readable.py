"""Were the node's rules read at all? Unknown rules are not "no rules": the verdict cannot be given."""

from __future__ import annotations

from kubectl_proxydoctor.migrate.result import CheckResult, MigrateContext, NodeInput, result
from kubectl_proxydoctor.modes import MODES


def node_rules_readable(ctx: MigrateContext, node: NodeInput) -> list[CheckResult]:
    """"unknown" (essential) when no rules were found and some mode's rules were not read or not
    captured, or when a mode's rules failed to read."""
    from kubectl_proxydoctor.sources import has_kube_proxy_rules, unknown_rule_lines

    lines = unknown_rule_lines(node.snapshot, MODES, has_kube_proxy_rules(node.snapshot))
    if not lines:
        return []
    name = node.snapshot.node or "NODE"
    return [result("rules-readable", "Node rules read", node.scope, "unknown",
                   "kube-proxy's rules on this node could not be read or were not captured: the checks "
                   "that read them cannot tell", lines,
                   f"capture the node as root: `kubectl proxydoctor collect --node {name} -o {name}.tar.gz` "
                   f"(or `sudo sh collect-node.sh > {name}.tar` on it), then --from that capture",
                   essential=True)]
