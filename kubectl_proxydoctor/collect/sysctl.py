"""sysctl collector: the sysctls that decide how kube-proxy's rules behave -> sysctl.txt."""

from __future__ import annotations

from kubectl_proxydoctor.collect import CollectContext
from kubectl_proxydoctor.collect.node import read_files

SYSCTLS = (
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.ipv4.conf.all.arp_ignore",
    "net.ipv4.conf.all.arp_announce",
    "net.ipv6.conf.all.forwarding",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_count",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_buckets",
    "net.netfilter.nf_conntrack_tcp_be_liberal",
    "net.netfilter.nf_conntrack_udp_timeout",
    "net.netfilter.nf_conntrack_udp_timeout_stream",
    "net.nf_conntrack_max",
    "net.ipv4.vs.conntrack",
    "net.ipv4.vs.expire_nodest_conn",
    "net.ipv4.vs.expire_quiescent_template",
    "net.ipv4.vs.conn_reuse_mode",
)


def sysctl_path(key: str) -> str:
    """/proc/sys path of a sysctl key (dots are separators; dashes stay)."""
    return "/proc/sys/" + key.replace(".", "/")


def collect(ctx: CollectContext) -> None:
    """Read each sysctl from /proc/sys (inside ctx.netns when set); absent ones are left out."""
    paths = {key: sysctl_path(key) for key in SYSCTLS}
    reads = read_files(list(paths.values()), ctx.netns)
    lines: list[str] = []
    denied: list[str] = []
    for key, path in paths.items():
        got = reads[path]
        if got.text is not None:
            lines.append(f"{key} = {' '.join(got.text.split())}")
        elif not got.missing:
            denied.append(f"{key}: {got.error}")
    errors = {reads[path].error for key, path in paths.items() if reads[path].text is None
              and not reads[path].missing}
    if len(errors) == 1 and len(denied) > 1:  # one cause (e.g. the namespace): say it once
        denied = [f"{len(denied)} sysctls: {errors.pop()}"]
    if lines:
        ctx.ok("sysctl.txt", "sysctl.txt", "\n".join(lines) + "\n")
        if denied:
            ctx.sources["sysctl.txt"] = "ok (unreadable: " + "; ".join(denied) + ")"
    else:
        ctx.unavailable("sysctl.txt", "; ".join(denied) or "none of the sysctls exists under /proc/sys")
