"""The conntrack INVALID-drop workaround that nftables mode does not install.

Kernels before 6.1 can mark packets of long-lived TCP connections INVALID and reset them;
iptables mode hides this with ``-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP`` (counted
by ``kubeproxy_iptables_ct_state_invalid_dropped_packets_total``). nftables mode drops nothing;
``conntrack.tcpBeLiberal: true`` (``--conntrack-tcp-be-liberal``) is the replacement.
"""

from __future__ import annotations

from kubectl_proxydoctor import nodeinfo
from kubectl_proxydoctor.migrate.facts import ProxyFacts, _metrics
from kubectl_proxydoctor.migrate.result import CheckResult, MigrateContext, NodeInput, result
from kubectl_proxydoctor.migrate.versions import CT_FIXED_KERNEL, show

INVALID_METRIC = "kubeproxy_iptables_ct_state_invalid_dropped_packets_total"
LIBERAL_SYSCTL = "net.netfilter.nf_conntrack_tcp_be_liberal"


def conntrack_invalid(ctx: MigrateContext, node: NodeInput) -> list[CheckResult]:
    """Does this node depend on iptables mode's INVALID-drop rule?"""
    check, title = "conntrack-invalid", "Conntrack INVALID-drop workaround"
    if ctx.target != "nftables":
        return []
    facts: ProxyFacts = ctx.config or ProxyFacts()
    release = nodeinfo.kernel_release(node.snapshot)
    version = nodeinfo.kernel_version(release)
    liberal = nodeinfo.sysctls(node.snapshot).get(LIBERAL_SYSCTL)
    metrics = _metrics(node.snapshot)
    dropped = metrics.total(INVALID_METRIC) if metrics else None
    fixed = show(CT_FIXED_KERNEL)
    action = ("set conntrack.tcpBeLiberal: true (--conntrack-tcp-be-liberal) in kube-proxy's config "
              "with the switch")
    evidence = [f"kernel.txt: {release}" if release else "kernel.txt not captured"]
    if dropped is not None:
        evidence.append(f"{INVALID_METRIC} {int(dropped)}")
    if facts.tcp_be_liberal:
        return [result(check, title, node.scope, "pass", "conntrack.tcpBeLiberal is already on",
                       evidence + ["kube-proxy config conntrack.tcpBeLiberal: true"])]
    if liberal == "1":
        return [result(check, title, node.scope, "pass", "the node already runs with tcp_be_liberal",
                       evidence + [f"sysctl {LIBERAL_SYSCTL} = 1"])]
    if version is not None and version >= CT_FIXED_KERNEL:
        return [result(check, title, node.scope, "pass",
                       f"Linux {release} >= {fixed} does not have the conntrack bug the workaround hides",
                       evidence)]
    if dropped:
        return [result(check, title, node.scope, "fail",
                       f"iptables mode dropped {int(dropped)} INVALID packets; without the workaround "
                       "those connections get reset", evidence, action)]
    if version is None:
        return [result(check, title, node.scope, "unknown", "the kernel version is not known", evidence,
                       f"check `uname -r`; below {fixed}, {action}")]
    if dropped == 0:
        return [result(check, title, node.scope, "pass",
                       f"Linux {release} < {fixed}, but no packet was dropped as INVALID", evidence,
                       f"watch {INVALID_METRIC} until the switch")]
    return [result(check, title, node.scope, "warn",
                   f"Linux {release} < {fixed} and nothing shows whether INVALID drops happen", evidence,
                   action)]
