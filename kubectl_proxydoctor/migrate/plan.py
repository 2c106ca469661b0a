"""The short plan printed with a readiness answer: config change, rollout, rollback, what to watch."""

from __future__ import annotations

from dataclasses import dataclass, field

from kubectl_proxydoctor.migrate.config import GATE, NFTABLES_EQUIVALENT
from kubectl_proxydoctor.migrate.facts import ProxyFacts, current_mode
from kubectl_proxydoctor.migrate.result import CheckResult, MigrateContext
from kubectl_proxydoctor.migrate.versions import NFTABLES_BETA

NFT_ROLLBACK = "nft delete table ip kube-proxy; nft delete table ip6 kube-proxy"
IPVS_CLEANUP = ("ipvsadm --clear; ip link delete kube-ipvs0; then ipset destroy each KUBE-* set "
                "once nothing references it")
RESTART = "kubectl -n kube-system rollout restart daemonset/kube-proxy"
SYNC_WATCH = ("kubeproxy_sync_proxy_rules_last_timestamp_seconds keeps up with "
              "..._last_queued_timestamp_seconds")
STATUS = "kubectl -n kube-system rollout status daemonset/kube-proxy"


@dataclass
class Plan:
    """What to change, how to roll it out and back, and what to watch afterwards."""

    config: list[str] = field(default_factory=list)
    rollout: list[str] = field(default_factory=list)
    rollback: list[str] = field(default_factory=list)
    watch: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"config": list(self.config), "rollout": list(self.rollout), "rollback": list(self.rollback),
                "watch": list(self.watch)}


def _failed(results: list[CheckResult], check: str) -> bool:
    return any(r.check == check and r.status in ("fail", "warn") for r in results)


def build_plan(ctx: MigrateContext, results: list[CheckResult]) -> Plan:
    """The plan for ``ctx.target``, including the config lines the failed checks call for."""
    facts: ProxyFacts = ctx.config or ProxyFacts()
    uses_flags = any(a.startswith("--proxy-mode") for a in facts.flags) and not any(
        a.startswith("--config") for a in facts.flags)
    where = ("the kube-proxy DaemonSet's flags" if uses_flags
             else "ConfigMap kube-system/kube-proxy (config.conf)")
    node_modes = sorted({m for m in (current_mode(n.snapshot, facts, n.state)[0] for n in ctx.nodes)
                         if m and m != ctx.target})
    configured = facts.mode if facts.mode != ctx.target else None  # never "back to" the target itself
    previous = "/".join(node_modes) or configured or (
        "iptables" if configured == "" else "the mode kube-proxy ran before")
    plan = Plan()
    plan.config.append(f"in {where}: " + ("--proxy-mode=" if uses_flags else "mode: ") + ctx.target)
    if ctx.target == "nftables":
        if facts.version is not None and facts.version < NFTABLES_BETA and not facts.feature_gates.get(GATE):
            plan.config.append(f"featureGates: {{{GATE}: true}}  (kube-proxy {facts.version_text} is alpha)")
        for key, value in facts.iptables.items():
            repl = NFTABLES_EQUIVALENT.get(key.lstrip("-"))
            if repl:
                plan.config.append(f"{repl}: {value}  (replaces iptables.{key})")
        if _failed(results, "conntrack-invalid"):
            plan.config.append("conntrack.tcpBeLiberal: true  (replaces the INVALID-drop workaround)")
        if _failed(results, "nodeport-addresses"):
            plan.config.append("nodePortAddresses: [<the CIDRs clients use for NodePorts>]  "
                               "(default: primary IP)")
        plan.rollout = [
            "canary first if you can: keep one node out of the kube-proxy DaemonSet (node affinity) and "
            "run a copy of it with the new mode pinned to that node",
            RESTART, STATUS,
            "kube-proxy deletes its iptables- and IPVS-mode rules itself when it starts in nftables mode "
            "(platformCleanup); `kubectl proxydoctor check` names anything left",
        ]
        plan.rollback = [f"set mode back to {previous} in {where}, then {RESTART}",
                         "kube-proxy in iptables/IPVS mode deletes its nftables tables when it starts; "
                         f"where they remain, on the node: {NFT_ROLLBACK}"]
        plan.watch = [
            "kubeproxy_sync_proxy_rules_nftables_sync_failures_total stays 0",
            SYNC_WATCH,
            "kube-proxy /healthz on :10256 answers 200 (load balancers use it)",
            "NodePorts answer on the addresses clients use (primary IP only unless nodePortAddresses is set)",
            "long-lived TCP connections through Services are not reset (kernels < 6.1)",
            "`kubectl proxydoctor check` on a node: no drift, no mode-leftover",
        ]
    else:
        if facts.ipvs:
            plan.config.append("remove the ipvs.* settings (" + ", ".join(facts.ipvs)
                               + "); iptables mode ignores them")
        plan.rollout = [RESTART, STATUS,
                        "kube-proxy does not remove IPVS state when it starts in iptables mode (both modes "
                        "are iptables-based): on each node, " + IPVS_CLEANUP]
        plan.rollback = [f"set mode back to ipvs in {where}, then {RESTART}",
                         "kube-proxy in IPVS mode rebuilds kube-ipvs0, its ipsets and virtual servers; the "
                         "iptables-mode KUBE-SVC-*/KUBE-SEP-* chains stay unreferenced "
                         "(`kubectl proxydoctor check` names them)"]
        plan.watch = [
            "kubeproxy_sync_proxy_rules_iptables_restore_failures_total stays 0",
            SYNC_WATCH,
            "kube-proxy /healthz on :10256 answers 200",
            "`kubectl proxydoctor check` on a node: no drift, no IPVS leftovers",
        ]
    return plan
