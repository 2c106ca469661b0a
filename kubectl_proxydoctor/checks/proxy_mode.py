"""Checks on which proxy runs the node: unsupported modes, Cilium owning services, rules another
mode left behind (mode-leftover), and a configured mode that differs from the running one."""

from __future__ import annotations

from collections.abc import Iterable

from kubectl_proxydoctor.checks import CheckContext, check
from kubectl_proxydoctor.model import Finding, Severity
from kubectl_proxydoctor.proxy_mode import ProxyModeDecision, decide, leftovers

MAX_COMMANDS = 24  # a fix names at most this many commands, then says how many more
CLEANUP_HINT = {
    "iptables": "'kube-proxy --cleanup' removes per-service chains but leaves KUBE-PROXY-CANARY, "
                "KUBE-FIREWALL (kubelet's duplicate) and KUBE-MARK-MASQ behind",
    "nftables": "'kube-proxy --cleanup' (with the NFTablesProxyMode gate on 1.29-1.30) removes them",
    "ipvs": "'kube-proxy --cleanup' removes them",
}


def decision_for(ctx: CheckContext) -> ProxyModeDecision:
    """The proxy-mode decision for this context (NodeState's; decided here only for a bare context)."""
    if ctx.decision is None:
        ctx.decision = decide(ctx.snapshot, ctx.cluster, ctx.views)
    return ctx.decision


@check("proxy-mode-unsupported")
def unsupported_mode(ctx: CheckContext) -> Iterable[Finding]:
    """The node runs a proxy mode proxydoctor cannot check (userspace, Windows kernelspace)."""
    decision = decision_for(ctx)
    if decision.unsupported is None:
        return
    severity: Severity = "warning" if decision.mode == "kernelspace" else "error"
    fix = ("Set mode to iptables, nftables or ipvs in kube-proxy's configuration (userspace is gone "
           "since 1.26) and restart kube-proxy." if decision.mode == "userspace" else
           "Check this node with Windows tools (hnsdiag list loadbalancers); proxydoctor reads Linux "
           "netfilter/IPVS state only.")
    yield Finding(code="unsupported-mode", severity=severity,
                  message=f"proxy mode {decision.mode!r}: {decision.unsupported}",
                  evidence=list(decision.evidence), fix=fix, mode=decision.mode)


@check("proxy-mode-cilium")
def cilium_owns_services(ctx: CheckContext) -> Iterable[Finding]:
    """Cilium's kube-proxy replacement handles services here: kube-proxy checks do not apply."""
    decision = decision_for(ctx)
    if decision.mode != "cilium":
        return
    yield Finding(code="cilium-owns-services", severity="info",
                  message="Cilium's kube-proxy replacement owns services on this node (no kube-proxy "
                          "rules); kube-proxy checks are skipped",
                  evidence=list(decision.evidence),
                  fix="Use 'cilium-dbg service list' / 'cilium-dbg bpf lb list' in the cilium agent pod "
                      "to inspect service load-balancing on this node.",
                  mode="cilium")


@check("proxy-mode-leftover")
def mode_leftover(ctx: CheckContext) -> Iterable[Finding]:
    """Rules of another kube-proxy mode are still on the node (e.g. iptables chains after a switch
    to nftables)."""
    decision = decision_for(ctx)
    for left in leftovers(ctx.snapshot, decision):
        severity: Severity
        if left.service_rules:
            severity = "error"
            impact = ("they still hold per-service rules that can catch and DNAT service traffic "
                      "to stale endpoints")
        else:
            severity = "warning"
            impact = ("no per-service rules remain, but what is left still acts on packets or holds "
                      "addresses, and confuses tools")
        shown = left.commands[:MAX_COMMANDS]
        commands = "; ".join(shown)
        if len(left.commands) > len(shown):
            commands += f"; ... ({len(left.commands) - len(shown)} more commands of the same kind)"
        kept = "".join(f". {reason}" for reason in left.kept) + ("." if left.kept else "")
        yield Finding(
            code="mode-leftover", severity=severity,
            message=f"{left.mode}-mode rules left on the node while it runs {decision.mode}: {left.detail} "
                    f"({impact})",
            evidence=[*left.evidence, f"running mode {decision.mode}: " + "; ".join(decision.evidence[:2])],
            fix=(f"Remove the {left.mode} leftovers on the node ({CLEANUP_HINT[left.mode]}): {commands}{kept}"
                 if commands else f"Remove the {left.mode} leftovers on the node{kept or '.'}"),
            mode=left.mode)


@check("proxy-mode-mismatch")
def mode_mismatch(ctx: CheckContext) -> Iterable[Finding]:
    """The configured (or reported) mode differs from the one whose rules program the node."""
    decision = decision_for(ctx)
    for conflict in decision.conflicts:
        configured = "config says" in conflict
        why = _why_not_configured(ctx, decision) if configured else []
        yield Finding(
            code="mode-mismatch", severity="warning", message=conflict + (f" ({why[0]})" if why else ""),
            evidence=[*why[1:], *decision.evidence],
            fix=("kube-proxy reads its mode only at start: restart it to apply the configured mode, or fix "
                 "the configuration if the running mode is the intended one." if configured else
                 "Make sure only one service proxy programs this node; remove the other's rules or config."),
            mode=decision.mode if decision.mode != "unknown" else None)


def _why_not_configured(ctx: CheckContext, decision: ProxyModeDecision) -> list[str]:
    """A likely reason the configured mode is not the running one: [summary, evidence...]."""
    configured, running = decision.config_mode, decision.mode
    if configured == "ipvs" and running == "iptables":
        modules = ctx.snapshot.text("modules.txt")
        loaded = sorted({line.split()[0] for line in (modules or "").splitlines()
                         if line.split() and line.split()[0].startswith("ip_vs")})
        builtin = "CONFIG_IP_VS=y" in (ctx.snapshot.text("kernel-config.txt") or "")
        if modules is not None and "ip_vs" not in loaded and not builtin:
            return ["the ip_vs kernel module is not loaded: kube-proxy could not use IPVS (it used to fall "
                    "back to iptables silently, kubernetes#63801)", "modules.txt: no ip_vs module"]
        return ["IPVS could not be used when kube-proxy started? older kube-proxy fell back to iptables "
                "silently (kubernetes#63801)"]
    if configured == "nftables" and ctx.cluster is not None:
        from kubectl_proxydoctor.kubeproxy_config import from_cluster

        cfg = from_cluster(ctx.cluster)
        version = _minor(cfg.version)
        if version is not None and version < 29:
            return [f"kube-proxy {cfg.version} has no nftables mode (added in v1.29)", f"image {cfg.image}"]
        if version in (29, 30) and not cfg.feature_gates.get("NFTablesProxyMode"):
            return [f"kube-proxy {cfg.version} needs the NFTablesProxyMode feature gate for nftables mode",
                    f"featureGates: {cfg.feature_gates or 'none'}"]
    return []


def _minor(version: str) -> int | None:
    parts = version.lstrip("v").split(".")
    try:
        return int(parts[1]) if len(parts) > 1 and parts[0] == "1" else None
    except ValueError:
        return None
