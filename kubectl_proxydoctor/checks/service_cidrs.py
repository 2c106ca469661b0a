"""service-cidr-mismatch (nftables): the CIDRs kube-proxy drops unallocated ClusterIPs in are not
the API's ServiceCIDRs (networking.k8s.io, GA in 1.33), so kube-proxy missed a ServiceCIDR change.

Only when both are known: ServiceCIDRs not read (API before 1.33, not captured) or no drop rule
(kube-proxy without ServiceCIDRs writes none) is no evidence of a mismatch.
"""

from __future__ import annotations

from collections.abc import Iterable

from kubectl_proxydoctor.checks import CheckContext, check
from kubectl_proxydoctor.kube_proxy_pod import for_context
from kubectl_proxydoctor.model import Finding
from kubectl_proxydoctor.modes.nftables.model import NftRuleset
from kubectl_proxydoctor.modes.nftables.service_cidrs import dropped_cidrs, family_of, normalise


def _mode(ctx: CheckContext) -> str | None:
    mode = ctx.extra.get("mode")
    if mode:
        return str(mode)
    text = (ctx.snapshot.text("kube-proxy-mode.txt") or "").strip()
    return text or ctx.snapshot.meta.get("mode")


@check("nftables-service-cidrs", needs_api=True)
def service_cidr_mismatch(ctx: CheckContext) -> Iterable[Finding]:
    """Each kube-proxy table whose unallocated-ClusterIP drop covers other CIDRs than the API's."""
    cidrs = ctx.cluster.service_cidrs() if ctx.cluster is not None else None
    if cidrs is None or _mode(ctx) not in (None, "nftables", "unknown"):
        return
    rulesets = [v.raw for v in ctx.views if v.mode == "nftables" and isinstance(v.raw, NftRuleset)]
    for ruleset in rulesets[:1]:  # both families' views share one ruleset
        for table in ruleset.kube_proxy_tables():
            dropped = dropped_cidrs(table)
            if dropped is None or not dropped.cidrs:
                continue
            want = [normalise(c) for c in cidrs if family_of(c) == table.family]
            missing = [c for c in want if c not in dropped.cidrs]
            extra = [c for c in dropped.cidrs if c not in want]
            if not missing and not extra:
                continue
            effects = []
            if missing:
                effects.append(f"traffic to unallocated ClusterIPs of {', '.join(missing)} is not dropped "
                               "on this node (it follows the routing table)")
            if extra:
                effects.append(f"every address of {', '.join(extra)} that is not a Service port is dropped "
                               "on this node, although no ServiceCIDR holds it")
            yield Finding(
                code="service-cidr-mismatch", severity="warning", mode="nftables",
                message=(f"table {table.family} kube-proxy drops unallocated ClusterIPs in "
                         f"{', '.join(dropped.cidrs)} but the API's ServiceCIDRs ({table.family}) are "
                         f"{', '.join(want) or 'none'}: kube-proxy has not applied the ServiceCIDR change; "
                         + "; ".join(effects)),
                evidence=[*dropped.rules, f"API ServiceCIDRs: {', '.join(cidrs) or 'none'}"],
                fix=("kube-proxy reads ServiceCIDRs through a watch: check its log for errors on them "
                     f"(`{for_context(ctx).logs} | grep -i servicecidr`; it needs list and watch on "
                     "servicecidrs.networking.k8s.io), then "
                     f"restart it (`{for_context(ctx).restart}`) so it rewrites the rule."))
