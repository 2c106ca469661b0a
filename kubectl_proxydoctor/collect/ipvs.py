"""IPVS collector (read-only): the IPVS table, /proc/net/ip_vs and kube-proxy's ipsets.

IPVS is read through pyroute2 (generic netlink) and stored as ``ipvsadm -Ln --exact`` text so
captures keep the stock format; ``ipvsadm`` is the fallback. Nothing touches IPVS unless
/proc/net/ip_vs exists (the module is loaded): a netlink family lookup or ipvsadm could otherwise
make the kernel load ip_vs.
"""

from __future__ import annotations

import re

from kubectl_proxydoctor.collect import CollectContext
from kubectl_proxydoctor.collect.node import read_files, run_tool
from kubectl_proxydoctor.errors import ProxyDoctorError

PROC_IP_VS = "/proc/net/ip_vs"
CONFIG_GZ = "/proc/config.gz"


def absence_reason() -> str:
    """Why there is no /proc/net/ip_vs, in one line (from /proc/config.gz when readable)."""
    import gzip

    try:
        with gzip.open(CONFIG_GZ, "rt") as f:
            config = f.read()
    except OSError:
        return "kernel has no IP_VS (no /proc/net/ip_vs; ip_vs not loaded)"
    if "# CONFIG_IP_VS is not set" in config:
        return "kernel has no IP_VS (CONFIG_IP_VS is not set)"
    if "CONFIG_IP_VS=m" in config:
        return "ip_vs module not loaded (kube-proxy in IPVS mode loads it)"
    return "kernel has no IP_VS (no /proc/net/ip_vs)"


_HEADER = re.compile(r"IP Virtual Server version (\S+) \(size=(\d+)\)")


def header_of(proc_text: str) -> tuple[str, int]:
    """IPVS version and connection-table size from /proc/net/ip_vs's first line (as ipvsadm prints)."""
    m = _HEADER.search(proc_text.split("\n", 1)[0])
    return (m.group(1), int(m.group(2))) if m else ("1.2.1", 4096)


def collect(ctx: CollectContext) -> None:
    """Store ipvsadm.txt, proc-net-ip_vs.txt and ipset-save.txt, or say why each is missing."""
    _collect_ipset(ctx)
    proc = read_files([PROC_IP_VS], ctx.netns)[PROC_IP_VS]
    if proc.text is None:
        reason = absence_reason() if proc.missing else f"{PROC_IP_VS}: {proc.error}"
        ctx.unavailable("ipvs", reason)
        return
    ctx.ok("proc-net-ip_vs", "proc-net-ip_vs.txt", proc.text)
    try:
        from kubectl_proxydoctor.collect.ipvs_netlink import read_live
        from kubectl_proxydoctor.formats.ipvsadm import render_list

        version, size = header_of(proc.text)
        ctx.ok("ipvs", "ipvsadm.txt", render_list(read_live(ctx.netns), version, size))
        return
    except ProxyDoctorError as e:
        netlink_error = str(e)
    res = run_tool(["ipvsadm", "-Ln", "--exact"], ctx.netns)
    if res.ok:
        ctx.ok("ipvs", "ipvsadm.txt", res.stdout)
    else:
        ctx.unavailable("ipvs", f"{netlink_error}; {res.error}")


def _collect_ipset(ctx: CollectContext) -> None:
    res = run_tool(["ipset", "save"], ctx.netns)
    if res.ok:
        ctx.ok("ipset", "ipset-save.txt", res.stdout)
    else:
        ctx.unavailable("ipset", res.error or "ipset save failed", res.why)
