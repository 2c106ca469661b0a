"""kube-proxy's own configuration: version, feature gate, ``mode``, and settings that stop mattering."""

from __future__ import annotations

from kubectl_proxydoctor.migrate.facts import ProxyFacts
from kubectl_proxydoctor.migrate.result import CheckResult, MigrateContext, result
from kubectl_proxydoctor.migrate.versions import (
    IPVS_DEPRECATED,
    NFTABLES_ALPHA,
    NFTABLES_BETA,
    NFTABLES_GA,
)

GATE = "NFTablesProxyMode"
# iptables.* -> the nftables.* setting that replaces it ("" when nothing does)
NFTABLES_EQUIVALENT = {"masqueradeAll": "nftables.masqueradeAll", "masqueradeBit": "nftables.masqueradeBit",
                       "minSyncPeriod": "nftables.minSyncPeriod", "syncPeriod": "nftables.syncPeriod",
                       "localhostNodePorts": ""}


def _facts(ctx: MigrateContext) -> ProxyFacts:
    return ctx.config or ProxyFacts()


def kube_proxy_version(ctx: MigrateContext) -> list[CheckResult]:
    """nftables mode: alpha in 1.29-1.30 (feature gate), beta in 1.31-1.32, GA from 1.33."""
    check, title = "kube-proxy-version", "kube-proxy version"
    facts = _facts(ctx)
    if facts.version is None:
        return [result(check, title, "cluster", "unknown",
                       "kube-proxy's version is not known (no DaemonSet image tag, metrics or capture)",
                       action="read the kube-proxy DaemonSet (needs 'get daemonsets' in kube-system)",
                       essential=ctx.target == "nftables")]
    v, evidence = facts.version, [f"{facts.version_source}: {facts.version_text}"]
    if ctx.target == "iptables":
        since = f"{IPVS_DEPRECATED[0]}.{IPVS_DEPRECATED[1]}"
        note = f"; IPVS mode is deprecated since {since}" if v >= IPVS_DEPRECATED else ""
        return [result(check, title, "cluster", "pass", f"every kube-proxy version has iptables mode{note}",
                       evidence)]
    if v < NFTABLES_ALPHA:
        return [result(check, title, "cluster", "fail",
                       f"kube-proxy {facts.version_text} has no nftables mode (alpha from 1.29)", evidence,
                       "upgrade kube-proxy (ideally to >= 1.33, where nftables mode is GA) first", True)]
    if v < NFTABLES_BETA:
        gate = facts.feature_gates.get(GATE)
        evidence.append(f"featureGates {GATE}: {gate}" if gate is not None
                        else f"feature gate {GATE} not set")
        if gate is None and not facts.config_read:
            return [result(check, title, "cluster", "unknown",
                           f"kube-proxy {facts.version_text}: nftables mode is alpha; whether the "
                           f"{GATE} gate is on is not known (configuration not read)", evidence,
                           f"check featureGates in kube-proxy's config; it needs {GATE}: true", True)]
        if gate:
            return [result(check, title, "cluster", "warn",
                           f"kube-proxy {facts.version_text}: nftables mode is alpha (gate {GATE} is on)",
                           evidence, "prefer kube-proxy >= 1.31 (beta) or >= 1.33 (GA) for production", True)]
        return [result(check, title, "cluster", "fail",
                       f"kube-proxy {facts.version_text}: nftables mode is alpha and needs the {GATE} gate",
                       evidence, f"set featureGates: {{{GATE}: true}} with the mode change, or upgrade "
                       "kube-proxy to >= 1.31", True)]
    if v < NFTABLES_GA:
        return [result(check, title, "cluster", "pass",
                       f"kube-proxy {facts.version_text}: nftables mode is beta (on by default)", evidence,
                       essential=True)]
    return [result(check, title, "cluster", "pass", f"kube-proxy {facts.version_text}: nftables mode is GA",
                   evidence, essential=True)]


def mode_setting(ctx: MigrateContext) -> list[CheckResult]:
    """``mode`` unset means iptables today, and will mean nftables when that becomes the default."""
    check, title = "mode-unset", "mode set explicitly"
    facts = _facts(ctx)
    if facts.mode is None:
        return [result(check, title, "cluster", "unknown", "kube-proxy's configuration was not read",
                       action="read the kube-proxy ConfigMap and DaemonSet")]
    evidence = [facts.mode_source or "kube-proxy configuration"]
    if facts.mode == "":
        return [result(check, title, "cluster", "warn",
                       "mode is unset: kube-proxy runs iptables mode by default today, and the meaning of "
                       "an unset mode changes when nftables becomes the default", evidence,
                       f"write mode: {ctx.target} explicitly (the plan below does)")]
    if facts.mode == ctx.target:
        return [result(check, title, "cluster", "pass", f"mode is already {ctx.target}", evidence)]
    return [result(check, title, "cluster", "pass", f"mode is set explicitly ({facts.mode})", evidence)]


def ignored_settings(ctx: MigrateContext) -> list[CheckResult]:
    """Settings of the current mode (iptables.* / ipvs.*) that the target mode ignores."""
    check, title = "ignored-settings", "Settings that stop mattering"
    facts = _facts(ctx)
    if not facts.config_read:
        return [result(check, title, "cluster", "unknown", "kube-proxy's configuration was not read")]
    lines: list[str] = []
    if ctx.target == "nftables":
        for key, value in facts.iptables.items():
            repl = NFTABLES_EQUIVALENT.get(key.lstrip("-"), "")
            already = repl and repl.split(".", 1)[1] in facts.nftables and \
                facts.nftables[repl.split(".", 1)[1]] == value
            if already:
                continue
            then = f"set {repl}: {value}" if repl else "no equivalent"
            lines.append(f"iptables.{key}: {value} -> {then}")
    for key, value in facts.ipvs.items():
        lines.append(f"ipvs.{key}: {value} -> ignored in {ctx.target} mode")
    if not lines:
        return [result(check, title, "cluster", "pass",
                       "no iptables.* / ipvs.* setting differs from the defaults")]
    return [result(check, title, "cluster", "warn", f"{len(lines)} settings will be ignored after the switch",
                   lines, "carry each over to its nftables.* equivalent where one exists, drop the rest")]
