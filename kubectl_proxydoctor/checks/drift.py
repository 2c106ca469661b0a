"""Registered drift checks: what kube-proxy programmed against what the API says (needs the API).

The comparison runs once per context (``drift_compare.compare``); each check reports its codes.
"""

from __future__ import annotations

from collections.abc import Iterable

from kubectl_proxydoctor.checks import CheckContext, check
from kubectl_proxydoctor.checks.drift_compare import by_codes
from kubectl_proxydoctor.model import Finding


@check("drift-not-programmed", needs_api=True)
def not_programmed(ctx: CheckContext) -> Iterable[Finding]:
    """A service port in the API that the node has no rules for (or rules for another protocol)."""
    return by_codes(ctx, ("not-programmed", "wrong-protocol"))


@check("drift-stale-service", needs_api=True)
def stale_service(ctx: CheckContext) -> Iterable[Finding]:
    """Rules for a service port the API no longer has (or that kube-proxy must not proxy)."""
    return by_codes(ctx, ("stale-service",))


@check("drift-endpoints", needs_api=True)
def endpoints(ctx: CheckContext) -> Iterable[Finding]:
    """Missing and stale endpoints, and service chains flushed empty."""
    return by_codes(ctx, ("missing-endpoint", "stale-endpoint", "chain-missing"))


@check("drift-frontends", needs_api=True)
def frontends(ctx: CheckContext) -> Iterable[Finding]:
    """Missing, stale or wrong-port frontends, source ranges, traffic policy, no-endpoint verdicts."""
    return by_codes(
        ctx,
        (
            "missing-frontend",
            "stale-frontend",
            "wrong-port",
            "source-ranges-mismatch",
            "traffic-policy-mismatch",
            "no-endpoints-verdict",
        ),
    )


@check("drift-balance", needs_api=True)
def balance(ctx: CheckContext) -> Iterable[Finding]:
    """Uneven iptables/nftables probabilities or IPVS weights between endpoints."""
    return by_codes(ctx, ("uneven-probability", "uneven-weights"))


@check("drift-affinity", needs_api=True)
def affinity(ctx: CheckContext) -> Iterable[Finding]:
    """Session affinity programmed differently from the Service's sessionAffinity."""
    return by_codes(ctx, ("affinity-mismatch",))


@check("drift-local-blackhole", needs_api=True)
def local_blackhole(ctx: CheckContext) -> Iterable[Finding]:
    """Local traffic policy with no endpoint on this node: traffic sent here is dropped."""
    return by_codes(ctx, ("local-blackhole",))
