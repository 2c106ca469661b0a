"""ClusterIP ports that clients reach although no Service defines them.

nftables mode rejects traffic to a ClusterIP on a port no Service defines (ICMP port
unreachable). In IPVS mode ClusterIPs are local addresses on kube-ipvs0, so such traffic may reach
a host socket today; in iptables mode it goes nowhere. Evidence: conntrack entries.
"""

from __future__ import annotations

from kubectl_proxydoctor.migrate.facts import current_mode
from kubectl_proxydoctor.migrate.result import CheckResult, MigrateContext, NodeInput, result
from kubectl_proxydoctor.migrate.services import cluster_ip_ports, connections, service_of_ip

MAX_EVIDENCE = 8


def undefined_cluster_ip_ports(ctx: MigrateContext, node: NodeInput) -> list[CheckResult]:
    """Connections to ClusterIP:port pairs no Service defines."""
    check, title = "clusterip-undefined-ports", "Traffic to undefined ClusterIP ports"
    mode, how = current_mode(node.snapshot, ctx.config, node.state)
    if mode == ctx.target:
        return []
    if ctx.cluster is None:
        return [result(check, title, node.scope, "unknown", "the Services were not read (no API state)")]
    entries = connections(node.snapshot)
    if entries is None:
        return [result(check, title, node.scope, "unknown", "conntrack.txt was not captured",
                       action="capture conntrack -L to see which ClusterIP ports clients use")]
    defined = cluster_ip_ports(ctx.cluster)
    owners = service_of_ip(ctx.cluster)
    hits = [e for e in entries if e.original.dst in defined and e.original.dport is not None
            and (e.proto, e.original.dport) not in defined[e.original.dst]]
    if not hits:
        return [result(check, title, node.scope, "pass",
                       "every captured connection to a ClusterIP uses a port its Service defines",
                       [f"conntrack.txt: {len(entries)} entries checked (recent flows only)"])]
    answered = [e for e in hits if "UNREPLIED" not in e.flags]
    evidence = [f"conntrack.txt:{e.line}: {e.original.src} -> {e.original.dst}:{e.original.dport}/{e.proto} "
                f"({owners.get(e.original.dst, '?')} defines "
                + ", ".join(f"{p}/{proto}" for proto, p in sorted(defined[e.original.dst])) + ")"
                + ("" if "UNREPLIED" in e.flags else " answered") for e in hits[:MAX_EVIDENCE]]
    evidence.append(how)
    after = ("rejected (ICMP port unreachable)" if ctx.target == "nftables"
             else "dropped (no rule, no host socket)")
    if mode == "ipvs" and answered:
        return [result(check, title, node.scope, "fail",
                       f"{len(answered)} connections to undefined ClusterIP ports were answered through "
                       f"kube-ipvs0; after the switch they are {after}", evidence,
                       "add those ports to the Services (or point the clients elsewhere) before switching")]
    return [result(check, title, node.scope, "warn",
                   f"{len(hits)} connections go to ClusterIP ports no Service defines; after the switch they "
                   f"are {after}", evidence, "find the clients and fix their port")]
