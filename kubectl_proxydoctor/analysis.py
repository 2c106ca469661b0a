"""analyse(): one node's snapshot against the API, into a NodeReport (what `check`, `svc`, JSON show).

Steps: interpret every mode's rules, decide which proxy runs the node, compute what the API says
the node should have (expected.py), run the registered checks, and give every service port a
status: ok | drift | not-programmed | not-expected | unknown (rules in a layout not understood: not compared).
"""

from __future__ import annotations

from kubectl_proxydoctor.causes import order_by_cause
from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.gcpause import gc_paused
from kubectl_proxydoctor.model import Endpoint, Finding, ProgrammedView, ServicePortName
from kubectl_proxydoctor.node_state import (  # noqa: F401 - re-exported: where callers found them
    API_LISTS,
    SKIP_MODES,
    NodeState,
    api_problem,
    build_node_state,
    interpret_views,
    mode_module,
    proxied_families,
    relabel_views,
    split_views,
)
from kubectl_proxydoctor.report import NodeReport, ServiceStatus
from kubectl_proxydoctor.snapshot import NodeSnapshot

# finding codes that do not make a service port "drift" (the API's own choices, or things in front)
ADVISORY_CODES = frozenset({"local-blackhole", "firewall-in-front"})
# node-level checks that already explain a second backend's copy of a port
# rules kube-proxy may write that the interpreter does not understand: a warning, never drift
UNKNOWN_LAYOUT = "unknown-layout"
LEFTOVER_CODES = frozenset({"backend-leftover", "mode-leftover"})


def decide_mode(snapshot: NodeSnapshot, cluster: ClusterState | None, views: list[ProgrammedView]):
    """Which proxy programs this node: proxy_mode.decide's decision (mode, evidence, ...)."""
    from kubectl_proxydoctor.proxy_mode import decide

    return decide(snapshot, cluster, views)


def rules_unknown_finding(unknown: list, failed: dict[str, str], node: str | None, *,
                          live: bool = False) -> Finding:
    """One finding for rules that could not be read or were not captured: what, why, how to read them."""
    from kubectl_proxydoctor.sources import Why

    states = [s for r in unknown for s in r.problems()]
    evidence = [s.describe() for s in states] + [f"{k}: {v}" for k, v in failed.items()]
    modes = ", ".join(dict.fromkeys([r.mode for r in unknown] + list(failed)))
    whys = {r.why for r in unknown}
    target = node or "NODE"
    collect = f"`kubectl proxydoctor collect --node {target} -o {target}.tar.gz`"
    if Why.NEEDS_ROOT in whys:
        head = f"{modes} rules could not be read: reading them needs root (CAP_NET_ADMIN)"
        fix = (f"capture the node as root: on the node `sudo sh collect-node.sh > {target}.tar` "
               f"(or {collect}), then `kubectl proxydoctor check --from {target}.tar`")
        if live:
            fix = (f"run it as root on the node (`sudo kubectl-proxydoctor check`, or `kubectl debug "
                   f"node/{target} -it --profile=sysadmin --image=IMAGE -- kubectl-proxydoctor check`), "
                   f"or {collect} from anywhere")
    elif Why.TOOL_MISSING in whys:
        head = f"{modes} rules could not be read: the tool that lists them is missing"
        fix = (f"install the missing tool on the node (iptables, nft, ipvsadm), or use {collect}, whose "
               "collector image has them")
    elif Why.FAILED in whys or failed:
        head = f"{modes} rules could not be read"
        fix = f"see the evidence for the error, then capture the node again ({collect})"
    else:
        head = f"{modes} rules were not captured (a missing file means not captured, never empty)"
        fix = (f"capture the node with {collect} or `sh collect-node.sh > {target}.tar` on it as root "
               "(by hand: `iptables-save > iptables-save.txt`, `nft -j list ruleset > nft-ruleset.json`, "
               "`ipvsadm -Ln --exact > ipvsadm.txt`)")
    return Finding("rules-unknown", "warning",
                   f"{head}: whether kube-proxy programmed the services is unknown, so no service port "
                   "was compared with the API", evidence=evidence, fix=fix)


def _dedupe(findings: list[Finding], secondary: list[Finding]) -> list[Finding]:
    """Drop a second backend's finding (``secondary``) that repeats the main backend's, or that a
    leftover check (backend-leftover / mode-leftover) already explains for the same port."""
    second = {id(f) for f in secondary}
    primary = {(f.code, f.service, f.port, f.protocol) for f in findings if id(f) not in second}
    leftovers = {(f.service, f.port) for f in findings if f.code in LEFTOVER_CODES}
    return [
        f
        for f in findings
        if id(f) not in second
        or ((f.code, f.service, f.port, f.protocol) not in primary and (f.service, f.port) not in leftovers)
    ]


def _statuses(report: NodeReport, expected, primary: list[ProgrammedView],
              namespace: str | None = None) -> list[ServiceStatus]:
    """Every service port's status (only ``namespace``'s when given: the others are not shown)."""
    programmed: dict[ServicePortName, list] = {}
    for view in primary:
        for (name, _fam), port in view.ports.items():
            if namespace and name.namespace != namespace:
                continue
            programmed.setdefault(name, []).append(port)
    wanted: dict[ServicePortName, list] = {}
    if expected is not None:
        for (name, _fam), port in expected.ports.items():
            if namespace and name.namespace != namespace:
                continue
            wanted.setdefault(name, []).append(port)
    drifting = {
        (f.service, f.port, f.protocol)
        for f in report.findings
        if f.severity in ("error", "warning") and f.code not in ADVISORY_CODES and f.service
        and f.code != UNKNOWN_LAYOUT
    }
    # rules not understood: the port is not compared (unknown)
    not_understood = {(f.service, f.port, f.protocol) for f in report.findings if f.code == UNKNOWN_LAYOUT}
    out = []
    for name in sorted(set(programmed) | set(wanted)):  # a name is its (ns, name, port, protocol) tuple
        exp, prog = wanted.get(name, []), programmed.get(name, [])
        key = (name.service, name.port, name.protocol)
        if exp and not prog:
            status = "not-programmed"
        elif prog and not exp:
            status = "not-expected"
        elif key in not_understood:
            status = "unknown"  # its rules were not compared: what else is said of them is unsure too
        elif key in drifting:
            status = "drift"
        else:
            status = "ok"
        fronts = [f.address for p in exp for f in p.frontends] or [
            f.address for p in prog for f in p.frontends
        ]
        wanted_set = set(exp[0].reachable_endpoints) if len(exp) == 1 else {
            e for p in exp for e in p.reachable_endpoints}
        programmed_set = {t.endpoint for p in prog for f in p.frontends for t in f.targets if t.weight != 0}
        wanted_eps = _in_order(wanted_set)
        # the common case, a port as the API wants it: one sort for both lists
        programmed_eps = list(wanted_eps) if programmed_set == wanted_set else _in_order(programmed_set)
        out.append(
            ServiceStatus(
                name=name,
                status=status,  # type: ignore[arg-type]
                service_type=exp[0].service_type if exp else "",
                frontends=list(dict.fromkeys(fronts)),
                expected_endpoints=wanted_eps,
                programmed_endpoints=programmed_eps,
            )
        )
    return out


def _in_order(endpoints: set[Endpoint]) -> list[str]:
    """The endpoints in numeric order, as ``str(Endpoint)`` spells them (formatted here: 100k+)."""
    ordered = sorted(endpoints, key=Endpoint.sort_key)
    return [f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}" for ip, port in ordered]




def analyse(
    snapshot: NodeSnapshot,
    cluster: ClusterState | None,
    node_name: str | None = None,
    *,
    namespace: str | None = None,
) -> NodeReport:
    """Analyse one node: programmed views vs the API (node-only checks when ``cluster`` is None).

    With ``namespace``, only that namespace's service ports are reported (node-level findings stay)."""
    with gc_paused():  # the state, the expected view and the checks: millions of acyclic objects
        return report_for(build_node_state(snapshot, cluster, node_name, namespace=namespace), namespace)


def report_for(state: NodeState, namespace: str | None = None) -> NodeReport:
    """The NodeReport of a built state: run the checks on it and give every service port a status."""
    from kubectl_proxydoctor.checks import CheckContext, run_checks

    snapshot, mode, node = state.snapshot, state.mode, state.node
    report = NodeReport(node=node, mode=mode, snapshot=snapshot, views=state.views, state=state)
    report.modes_found = state.modes_found
    report.sources = state.sources
    for name, why in snapshot.unavailable().items():
        if name not in report.sources:  # the modes' own entries already say why
            report.sources[name] = why
    report.notes.append(f"mode {mode}: " + "; ".join(str(e) for e in state.decision.evidence))
    problem = state.api_problem
    if state.cluster is None:
        report.sources["api"] = "unavailable: not read"
    elif problem:
        report.sources["api"] = f"unavailable: {problem}"
    else:
        report.sources["api"] = "ok" if state.cluster.origin == "live" else f"ok ({state.cluster.origin})"
    if problem:
        report.unreadable.append("api")
        report.notes.append(
            f"API not usable ({problem}): only node-only checks ran; service statuses "
            "cannot be compared with the API"
        )
    if node is None:
        report.notes.append(
            "node name unknown (no meta.json node, no --node-name): Local-policy endpoints not compared"
        )
    if mode in SKIP_MODES:
        report.notes.append(SKIP_MODES[mode])
    unknown, failed = state.unknown_rules, state.failed_rules
    report.sources.update(failed)
    for rules in unknown:  # the rules the comparison needed: unknown, not merely not captured
        if report.sources.get(rules.mode) == "not captured":
            report.sources[rules.mode] = "unavailable: not captured"
    root_causes: list[Finding] = list(state.insane)
    if unknown or failed:
        report.unreadable.append("rules")
        what = "; ".join([r.summary() for r in unknown] + [f"{k}: {v}" for k, v in failed.items()])
        report.notes.append(f"{what}: service ports not compared with the API (finding rules-unknown)")
        root_causes.append(rules_unknown_finding(unknown, failed, node, live=snapshot.origin == "live"))
    report.kube_proxy = state.identity
    report.notes.extend(state.identity.notes)
    ctx = CheckContext.of(state, namespace)
    found = _dedupe(run_checks(ctx), ctx.drift_secondary())
    report.findings = order_by_cause(root_causes + found)
    report.cluster = state.usable
    report.expected = state.expected
    if state.expected is not None:  # without the API there is nothing to give a port a status against
        report.services = _statuses(report, state.expected, state.primary, namespace)
    if namespace:
        report.findings = [
            f for f in report.findings if f.service is None or f.service.startswith(namespace + "/")
        ]
        report.services = [s for s in report.services if s.name.namespace == namespace]
    return report
