"""service-cidr-mismatch (nftables): the CIDRs kube-proxy drops unallocated ClusterIPs in are not
the API's ServiceCIDRs (networking.k8s.io, GA in 1.33), so kube-proxy missed a ServiceCIDR change.

Only when both are known: ServiceCIDRs not read (API before 1.33, not captured) or no drop rule
(kube-proxy without ServiceCIDRs writes none) is no evidence of a mismatch.
"""

from __future__ import annotations

from collections.abc import Iterable

from kubectl_proxydoctor.checks import CheckContext, check
from kubectl_proxydoctor.formats.nft_model import NftRuleset
from kubectl_proxydoctor.kube_proxy_pod import for_context
from kubectl_proxydoctor.model import Finding
from kubectl_proxydoctor.modes.nftables.service_cidrs import CHAIN, dropped_cidrs, family_of, normalise


@check("nftables-service-cidrs", needs_api=True)
def service_cidr_mismatch(ctx: CheckContext) -> Iterable[Finding]:
    """Each kube-proxy table whose unallocated-ClusterIP drop covers other CIDRs than the API's."""
    cidrs = ctx.cluster.service_cidrs() if ctx.cluster is not None else None
    if cidrs is None or ctx.running_mode() not in (None, "nftables", "unknown"):
        return
    rulesets = [v.raw for v in ctx.views if v.mode == "nftables" and isinstance(v.raw, NftRuleset)]
    for ruleset in rulesets[:1]:  # both families' views share one ruleset
        for table in ruleset.kube_proxy_tables():
            dropped = dropped_cidrs(table)
            if dropped is None:
                continue
            want = [normalise(c) for c in cidrs if family_of(c) == table.family]
            if not dropped.cidrs:
                yield from _no_drop_rule(ctx, table.family, want, cidrs)
                continue
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


SERVICE_CIDR_INFORMER = (1, 33)  # kube-proxy watches ServiceCIDRs by default (MultiCIDRServiceAllocator GA)


def _no_drop_rule(ctx: CheckContext, family: str, want: list[str], cidrs: list[str]) -> Iterable[Finding]:
    """No drop rule although the API has ServiceCIDRs: only a 1.33+ kube-proxy should have one (older
    ones watch ServiceCIDRs only with the MultiCIDRServiceAllocator feature gate on)."""
    from kubectl_proxydoctor.kube_proxy_version import version_evidence

    evidence = version_evidence(ctx.snapshot, ctx.cluster)
    minor = evidence[0].minor if evidence else None
    if not want or minor is None or minor < SERVICE_CIDR_INFORMER:
        return
    pod = for_context(ctx)
    yield Finding(
        code="service-cidr-mismatch", severity="warning", mode="nftables",
        message=(f"table {family} kube-proxy has no drop of unallocated ClusterIPs although the API's "
                 f"ServiceCIDRs ({family}) are {', '.join(want)} and kube-proxy {evidence[0].version} "
                 f"({evidence[0].source}) watches them (unless its MultiCIDRServiceAllocator feature gate "
                 "is off): traffic to unallocated ClusterIPs is not dropped on this node (it follows the "
                 "routing table)"),
        evidence=[f"chain {CHAIN} has no drop rule", f"API ServiceCIDRs: {', '.join(cidrs)}",
                  f"{evidence[0].source}: {evidence[0].detail}"],
        fix=(f"Check kube-proxy's log for errors on ServiceCIDRs (`{pod.logs} | grep -i servicecidr`; it "
             "needs list and watch on servicecidrs.networking.k8s.io) and its feature gates, then restart "
             f"it (`{pod.restart}`)."))
