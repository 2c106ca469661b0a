"""Leaving IPVS mode: schedulers other than round-robin are lost; session affinity is kept.

Both nftables and iptables mode pick an endpoint at random (rr's even spread, without its strict
rotation); IPVS schedulers such as lc/wlc/sh/mh have no equivalent. ClientIP session affinity
(IPVS "persistent") is implemented by both target modes with the Service's timeout.
"""

from __future__ import annotations

import re

from kubectl_proxydoctor.migrate.facts import current_mode
from kubectl_proxydoctor.migrate.result import CheckResult, MigrateContext, NodeInput, result

_SERVICE = re.compile(r"^(TCP|UDP|SCTP|FWM)\s+(\S+)\s+([a-z]+)\b(.*)$")
_PERSISTENT = re.compile(r"\bpersistent\s+(\d+)")
RANDOM_LIKE = {"rr", "random"}
DEPRECATION = "IPVS mode is deprecated since Kubernetes 1.35 (KEP-5495)"


def virtual_servers(text: str) -> list[tuple[str, str, int | None, int]]:
    """(protocol address:port, scheduler, persistence seconds, line) from `ipvsadm -Ln` text."""
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        m = _SERVICE.match(line.strip())
        if m:
            p = _PERSISTENT.search(m.group(4))
            out.append((f"{m.group(1)} {m.group(2)}", m.group(3), int(p.group(1)) if p else None, number))
    return out


def ipvs_checks(ctx: MigrateContext, node: NodeInput) -> list[CheckResult]:
    """Schedulers and session affinity of the node's IPVS virtual servers."""
    mode, how = current_mode(node.snapshot, ctx.config, node.state)
    text = node.snapshot.text("ipvsadm.txt")
    if mode != "ipvs" or not text:
        return []
    servers = virtual_servers(text)
    out: list[CheckResult] = []
    odd = [(vs, s, n) for vs, s, _, n in servers if s not in RANDOM_LIKE]
    if odd:
        scheds = sorted({s for _, s, _ in odd})
        out.append(result("ipvs-scheduler", "IPVS schedulers", node.scope, "warn",
                          f"{len(odd)} virtual servers use {', '.join(scheds)}; {ctx.target} mode picks "
                          "endpoints at random, so that balancing is lost",
                          [f"ipvsadm.txt:{n}: {vs} {s}" for vs, s, n in odd[:10]] + [DEPRECATION],
                          "check that those Services tolerate random balancing (or stay on IPVS)"))
    else:
        out.append(result("ipvs-scheduler", "IPVS schedulers", node.scope, "pass",
                          f"all {len(servers)} virtual servers use rr, which random choice replaces well",
                          [how, DEPRECATION]))
    sticky = [(vs, p, n) for vs, _, p, n in servers if p is not None]
    if sticky:
        out.append(result("session-affinity", "Session affinity", node.scope, "pass",
                          f"{len(sticky)} virtual servers are persistent; {ctx.target} mode keeps ClientIP "
                          "affinity with the Service's timeout (clients may move to a new endpoint once)",
                          [f"ipvsadm.txt:{n}: {vs} persistent {p}" for vs, p, n in sticky[:10]]))
    return out
