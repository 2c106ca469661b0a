"""NodePorts that will stop answering in nftables mode.

nftables mode serves NodePorts only on the node's primary IPs unless ``nodePortAddresses`` says
otherwise, and never on 127.0.0.1 (iptables mode's route_localnet trick). Traffic evidence:
conntrack entries to a NodePort on another address, and kube-proxy's
``kubeproxy_iptables_localhost_nodeports_accepted_packets_total`` counter.
"""

from __future__ import annotations

from kubectl_proxydoctor import nodeinfo
from kubectl_proxydoctor.migrate.facts import ProxyFacts, _metrics, current_mode
from kubectl_proxydoctor.migrate.result import CheckResult, MigrateContext, NodeInput, result
from kubectl_proxydoctor.migrate.services import (
    cluster_ip_ports,
    connections,
    is_loopback,
    node_ports,
    primary_ips,
    service_external_ips,
)

LOCALHOST_METRIC = "kubeproxy_iptables_localhost_nodeports_accepted_packets_total"
MAX_EVIDENCE = 6


def _hits(entries, ports, want) -> list:
    by_port = {(p.protocol, p.node_port): p for p in ports}
    out = []
    for e in entries or []:
        key = (e.proto, e.original.dport)
        if key in by_port and want(e.original.dst):
            out.append((e, by_port[key]))
    return out


def _show(hits) -> list[str]:
    lines = [f"conntrack.txt:{e.line}: {e.original.src} -> {e.original.dst}:{e.original.dport}/{e.proto} "
             f"= NodePort {p}" for e, p in hits[:MAX_EVIDENCE]]
    if len(hits) > MAX_EVIDENCE:
        lines.append(f"... and {len(hits) - MAX_EVIDENCE} more connections")
    return lines


def node_port_addresses(ctx: MigrateContext, node: NodeInput) -> list[CheckResult]:
    """NodePort traffic on node addresses other than the primary IP (nftables target only)."""
    check, title = "nodeport-addresses", "NodePorts on non-primary addresses"
    if ctx.target != "nftables":
        return []
    facts: ProxyFacts = ctx.config or ProxyFacts()
    ports = node_ports(ctx.cluster)
    if ctx.cluster is None:
        return [result(check, title, node.scope, "unknown", "the Services were not read (no API state)",
                       action="give api.json in the capture or --kubeconfig")]
    if not ports:
        return [result(check, title, node.scope, "pass", "no Service has a NodePort")]
    npa = facts.node_port_addresses
    if npa and npa != ["primary"]:
        return [result(check, title, node.scope, "pass",
                       f"nodePortAddresses is set ({', '.join(npa)}); nftables mode honours it the same way",
                       [f"{facts.mode_source or 'config'}: nodePortAddresses {npa}"])]
    primary = primary_ips(ctx.cluster, node.snapshot.node)
    if not primary:
        return [result(check, title, node.scope, "unknown",
                       "the node's primary IP is not known (no Node object with an InternalIP)",
                       action="read the Node object (needs 'get nodes')")]
    if not node.snapshot.text("ip-addr.json"):
        return [result(check, title, node.scope, "unknown",
                       "the node's addresses (ip-addr.json) were not captured",
                       [f"primary IP {', '.join(primary)}"], "capture `ip -j addr show`")]
    service_ips = set(cluster_ip_ports(ctx.cluster)) | service_external_ips(ctx.cluster)
    # kube-ipvs0 holds Service IPs in IPVS mode; NodePorts are never served on those
    local = {a.ip for a in nodeinfo.addresses(node.snapshot)
             if a.scope != "link" and a.ifname != "kube-ipvs0" and a.ip not in service_ips}
    others = sorted(ip for ip in local if ip not in primary and not is_loopback(ip))
    evidence = [f"primary IP {', '.join(primary)} (Node status.addresses); nodePortAddresses unset",
                f"{len(ports)} NodePorts: " + ", ".join(str(p) for p in ports[:8])]
    entries = connections(node.snapshot)
    hits = _hits(entries, ports, lambda dst: dst in local and dst not in primary and not is_loopback(dst))
    action = ("set nodePortAddresses to the CIDRs clients use (e.g. "
              + ", ".join(f"{ip}/32" for ip in others[:3] or ["<cidr>"]) + ") before switching, "
              "or move those clients to the primary IP")
    if hits:
        return [result(check, title, node.scope, "fail",
                       f"{len(hits)} connections reach NodePorts on addresses other than the primary IP; "
                       "nftables mode will not answer there", evidence + _show(hits), action)]
    if entries is None:
        if others:
            return [result(check, title, node.scope, "warn",
                           f"NodePorts will stop answering on {', '.join(others)}; no conntrack capture to "
                           "tell whether clients use them", evidence,
                           "capture conntrack (collect --conntrack) or set nodePortAddresses")]
        return [result(check, title, node.scope, "pass", "the node has no address besides its primary IP",
                       evidence)]
    note = f"; NodePorts will stop answering on {', '.join(others)}" if others else ""
    return [result(check, title, node.scope, "pass",
                   f"no captured connection uses a NodePort on a non-primary address{note}",
                   evidence + [f"conntrack.txt: {len(entries)} entries checked (recent flows only)"])]


def localhost_node_ports(ctx: MigrateContext, node: NodeInput) -> list[CheckResult]:
    """NodePorts reached on 127.0.0.1 (iptables mode only; nftables mode never serves them)."""
    check, title = "localhost-nodeports", "NodePorts on localhost"
    if ctx.target != "nftables":
        return []
    facts: ProxyFacts = ctx.config or ProxyFacts()
    mode, how = current_mode(node.snapshot, facts, node.state)
    if mode and mode != "iptables":
        return [result(check, title, node.scope, "pass",
                       f"kube-proxy runs in {mode} mode here, which does not serve NodePorts on 127.0.0.1",
                       [how])]
    metrics = _metrics(node.snapshot)
    counter = metrics.total(LOCALHOST_METRIC) if metrics else None
    ports = node_ports(ctx.cluster) if ctx.cluster is not None else []
    hits = _hits(connections(node.snapshot), ports, is_loopback)
    action = ("point those clients at the node IP (or a ClusterIP) before switching; "
              "nftables mode does not support NodePorts on 127.0.0.1")
    if counter:
        return [result(check, title, node.scope, "fail",
                       f"{int(counter)} packets were accepted to localhost NodePorts",
                       [f"{LOCALHOST_METRIC} {int(counter)}"] + _show(hits), action)]
    if hits:
        return [result(check, title, node.scope, "fail",
                       f"{len(hits)} connections use a NodePort on 127.0.0.1", _show(hits), action)]
    if counter is not None:
        return [result(check, title, node.scope, "pass", "no packet was accepted to a localhost NodePort",
                       [f"{LOCALHOST_METRIC} 0 (since kube-proxy started)"])]
    if facts.localhost_node_ports is False:
        return [result(check, title, node.scope, "pass", "localhost NodePorts are already disabled",
                       ["iptables.localhostNodePorts: false"])]
    localnet = nodeinfo.sysctls(node.snapshot).get("net.ipv4.conf.all.route_localnet")
    if localnet == "0":
        return [result(check, title, node.scope, "pass",
                       "route_localnet is 0, so localhost NodePorts cannot be in use",
                       ["sysctl net.ipv4.conf.all.route_localnet = 0"])]
    evidence = [f"sysctl net.ipv4.conf.all.route_localnet = {localnet}" if localnet is not None
                else "sysctl.txt does not show route_localnet",
                f"{LOCALHOST_METRIC} not exported by this kube-proxy"]
    if ctx.cluster is not None and not ports:
        return [result(check, title, node.scope, "pass", "no Service has a NodePort", evidence)]
    return [result(check, title, node.scope, "unknown",
                   "localhost NodePorts are enabled and nothing shows whether clients use them", evidence,
                   f"watch {LOCALHOST_METRIC} (kube-proxy >= 1.31) or capture conntrack before switching")]
