"""Run the migration checks and turn their results into a verdict.

Verdict: any ``fail`` -> "not ready" (exit 1); else every node checked already runs the target mode
-> "already" (exit 0, no plan; leftovers of the old mode are checked instead); else any essential
check ``unknown`` (kernel, kube-proxy version) -> "could not tell" (exit 3); else "ready" (exit 0),
warnings included.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from kubectl_proxydoctor.errors import EXIT_USAGE, ParseError, ProxyDoctorError
from kubectl_proxydoctor.exit_status import ExitStatus, Scope, status_of
from kubectl_proxydoctor.migrate import (
    clusterip,
    config,
    conntrack,
    facts,
    firewall,
    ipvs,
    kernel,
    nodeports,
    readable,
    third_party,
)
from kubectl_proxydoctor.migrate.plan import Plan, build_plan
from kubectl_proxydoctor.migrate.result import (
    STATUS_ORDER,
    VERDICT_EXIT,
    CheckResult,
    MigrateContext,
    NodeInput,
    Target,
    Verdict,
    result,
)
from kubectl_proxydoctor.snapshot import NodeSnapshot

TARGETS = ("nftables", "iptables")
ClusterCheck = Callable[[MigrateContext], list[CheckResult]]
NodeCheck = Callable[[MigrateContext, NodeInput], list[CheckResult]]

CLUSTER_CHECKS: tuple[ClusterCheck, ...] = (
    config.kube_proxy_version, kernel.cluster_kernel, config.mode_setting, config.ignored_settings,
)
NODE_CHECKS: tuple[NodeCheck, ...] = (
    readable.node_rules_readable, kernel.node_kernel, nodeports.node_port_addresses,
    nodeports.localhost_node_ports,
    firewall.host_firewall, conntrack.conntrack_invalid, third_party.third_party_rules,
    ipvs.ipvs_checks, clusterip.undefined_cluster_ip_ports,
)


@dataclass
class Readiness:
    """The answer: every check result, the verdict, and the plan."""

    target: Target
    verdict: Verdict
    results: list[CheckResult] = field(default_factory=list)
    plan: Plan = field(default_factory=Plan)
    nodes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return VERDICT_EXIT[self.verdict]

    def to_json(self) -> dict:
        counts = {s: sum(1 for r in self.results if r.status == s)
                  for s in ("pass", "warn", "fail", "unknown")}
        return {
            "target": self.target,
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "nodes": list(self.nodes),
            "counts": counts,
            "checks": [r.to_json() for r in self.results],
            "plan": self.plan.to_json(),
            "notes": list(self.notes),
        }


def verdict_of(results: list[CheckResult]) -> Verdict:
    """exit_status's fleet precedence: a check that fails (not ready) wins over an essential one
    that could not tell."""
    status = status_of(problem=any(r.status == "fail" for r in results),
                       unknown=any(r.status == "unknown" and r.essential for r in results), scope=Scope.FLEET)
    verdicts: dict[ExitStatus, Verdict] = {
        ExitStatus.PROBLEM: "not ready", ExitStatus.UNKNOWN: "could not tell", ExitStatus.OK: "ready"}
    return verdicts[status]


def _guard(fn, scope: str, *args) -> list[CheckResult]:
    try:
        return list(fn(*args))
    except (ParseError, ProxyDoctorError) as e:
        name = fn.__name__.replace("_", "-")
        return [result(name, name, scope, "unknown", f"input could not be read: {e}")]


def _already(ctx: MigrateContext, node: NodeInput) -> CheckResult | None:
    mode, how = facts.current_mode(node.snapshot, ctx.config, node.state)
    if mode == ctx.target:
        return result("current-mode", "Current mode", node.scope, "pass",
                      f"kube-proxy already runs in {ctx.target} mode here", [how])
    return None


def _old_mode_leftovers(ctx: MigrateContext, node: NodeInput) -> list[CheckResult]:
    """On a node already in the target mode: rules the previous mode left, with their safe removal."""
    from kubectl_proxydoctor.proxy_mode import ProxyModeDecision, decide, leftovers

    check, title = "old-mode-leftovers", "Rules left by the previous mode"
    decision = node.state.decision if node.state is not None else decide(node.snapshot, ctx.cluster)
    if decision.mode != ctx.target:
        decision = ProxyModeDecision(mode=ctx.target)
    found = leftovers(node.snapshot, decision)
    if not found:
        return [result(check, title, node.scope, "pass", "no rules of another kube-proxy mode are left")]
    commands = [c for left in found for c in left.commands]
    kept = [k for left in found for k in left.kept]
    return [result(check, title, node.scope, "warn",
                   "rules of the previous mode are still on the node: "
                   + "; ".join(left.detail for left in found),
                   [e for left in found for e in left.evidence] + kept,
                   "on the node: " + "; ".join(commands) + "".join(f". {k}" for k in kept))]


def _node_state(ctx: MigrateContext, node: NodeInput):
    """The node's NodeState (its one mode decision); None when its inputs cannot be read (the
    checks then say so themselves)."""
    from kubectl_proxydoctor.node_state import build_node_state

    try:
        return build_node_state(node.snapshot, ctx.cluster)
    except ProxyDoctorError:
        return None


def run(ctx: MigrateContext) -> Readiness:
    """Every cluster check, then every node check on each node given; sorted worst first."""
    if ctx.target not in TARGETS:
        raise ProxyDoctorError(f"unknown target mode {ctx.target!r}; use one of: {', '.join(TARGETS)}",
                               exit_code=EXIT_USAGE)
    if ctx.config is None:
        ctx.config = facts.from_cluster(ctx.cluster)
    for node in ctx.nodes:
        facts.add_node_facts(ctx.config, node.snapshot)
        if node.state is None:
            node.state = _node_state(ctx, node)
    results: list[CheckResult] = []
    for check in CLUSTER_CHECKS:
        results += _guard(check, "cluster", ctx)
    already = 0
    for node in ctx.nodes:
        done = _already(ctx, node)
        if done is not None:
            already += 1
            results.append(done)
            results += _guard(_old_mode_leftovers, node.scope, ctx, node)
            continue
        for node_check in NODE_CHECKS:
            results += _guard(node_check, node.scope, ctx, node)
    order = {"cluster": 0}
    results.sort(key=lambda r: (order.get(r.scope, 1), r.scope, STATUS_ORDER[r.status]))
    notes = list(ctx.notes) + list(ctx.config.problems)
    if ctx.cluster is not None:
        notes += [f"API {what}: {state}" for what, state in sorted(ctx.cluster.sources.items())
                  if not str(state).startswith("ok")]
    if not ctx.nodes:
        notes.append("no node capture: node-level checks (NodePorts, firewall, conntrack, third-party rules, "
                     "IPVS) did not run; give captures with --from")
    verdict = verdict_of(results)
    if ctx.nodes and already == len(ctx.nodes) and verdict != "not ready":
        notes.append(f"kube-proxy already runs in {ctx.target} mode on every node checked: there is nothing "
                     "to switch (no plan, no rollback)")
        return Readiness(ctx.target, "already", results, nodes=[n.name for n in ctx.nodes], notes=notes)
    readiness = Readiness(ctx.target, verdict, results, nodes=[n.name for n in ctx.nodes], notes=notes)
    readiness.plan = build_plan(ctx, results)
    return readiness


def check_readiness(target: str, cluster=None, snapshots: list[NodeSnapshot] | None = None,
                    notes: list[str] | None = None) -> Readiness:
    """Convenience entry point: target mode, API state (or None) and node snapshots."""
    ctx = MigrateContext(target=target, cluster=cluster,  # type: ignore[arg-type]
                         nodes=[NodeInput(s) for s in snapshots or []], notes=list(notes or []))
    return run(ctx)
