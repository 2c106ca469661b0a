"""analyse(): one node's snapshot against the API, into a NodeReport (what `check`, `svc`, JSON show).

Steps: interpret every mode's rules, decide which proxy runs the node, compute what the API says
the node should have (expected.py), run the registered checks, and give every service port a
status: ok | drift | not-programmed | not-expected.
"""

from __future__ import annotations

import importlib
import re

from kubectl_proxydoctor.causes import order_by_cause
from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.errors import ProxyDoctorError
from kubectl_proxydoctor.gcpause import gc_paused
from kubectl_proxydoctor.model import Finding, ProgrammedView, ServicePortName
from kubectl_proxydoctor.modes import MODES
from kubectl_proxydoctor.report import NodeReport, ServiceStatus
from kubectl_proxydoctor.snapshot import NodeSnapshot

# finding codes that do not make a service port "drift" (the API's own choices, or things in front)
ADVISORY_CODES = frozenset({"local-blackhole", "firewall-in-front"})
# node-level checks that already explain a second backend's copy of a port
LEFTOVER_CODES = frozenset({"backend-leftover", "mode-leftover"})
API_LISTS = ("list services", "list endpointslices")
# proxies whose service handling kube-proxy's rules do not describe -> why the comparison is skipped
SKIP_MODES = {
    "cilium": "Cilium's kube-proxy replacement owns services on this node: kube-proxy checks skipped",
    "userspace": "userspace mode (removed in Kubernetes 1.26) is not supported: kube-proxy checks skipped",
    "kernelspace": "Windows kernelspace mode is not supported: kube-proxy checks skipped",
}


def mode_module(mode: str):
    """The mode's interpreter package, or None when it is not (yet) installed."""
    try:
        module = importlib.import_module(f"kubectl_proxydoctor.modes.{mode}")
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("kubectl_proxydoctor.modes"):
            return None
        raise
    return module if hasattr(module, "interpret") else None


def interpret_views(snapshot: NodeSnapshot) -> tuple[list[ProgrammedView], dict[str, str]]:
    """Every mode's programmed views, and per mode "ok", "ok (no rules)" or why it was not read."""
    views: list[ProgrammedView] = []
    sources: dict[str, str] = {}
    for mode in MODES:
        module = mode_module(mode)
        if module is None:
            sources[mode] = "unavailable: no interpreter for this mode in this build"
            continue
        try:
            found = module.interpret(snapshot)
        except ProxyDoctorError as e:
            sources[mode] = f"unreadable: {e}"
            continue
        views.extend(found)
        if any(v.ports for v in found):
            sources[mode] = "ok"
        else:
            sources[mode] = _no_rules(snapshot, mode)
    return views, sources


def _no_rules(snapshot: NodeSnapshot, mode: str) -> str:
    """A mode without service rules: "ok (no rules)" only when its rules were really read."""
    from kubectl_proxydoctor.sources import Readability, rules_state

    rules = rules_state(snapshot, mode)
    if rules.known:
        absent = [s for s in rules.files if s.state is Readability.ABSENT]
        if absent and not any(s.state is Readability.OK for s in rules.files):
            return f"ok (none: {absent[0].reason})"
        return "ok (no rules)"
    if rules.unreadable:
        return "unavailable: " + "; ".join(s.describe() for s in rules.unreadable)
    return "not captured"


def relabel_views(views: list[ProgrammedView], cluster: ClusterState) -> list[ProgrammedView]:
    """IPVS keeps no names: give its frontends the API's service port names."""
    if not any(v.mode == "ipvs" for v in views):
        return views
    from kubectl_proxydoctor.modes.ipvs.labels import relabel

    return [relabel(v, cluster) if v.mode == "ipvs" else v for v in views]


def _backend(view: ProgrammedView) -> str:
    """A view's backend, one name for both families (ip6tables-legacy -> iptables-legacy)."""
    return view.source.replace("ip6tables", "iptables")


def split_views(
    views: list[ProgrammedView], mode: str | None
) -> tuple[list[ProgrammedView], dict[str, list[ProgrammedView]]]:
    """The views kube-proxy itself writes (the active mode's main backend) and the other backends
    of the same mode (e.g. a stale iptables-legacy copy), by backend name."""
    mine = [v for v in views if mode is None or v.mode == mode]
    if not mine:
        return [], {}
    counts: dict[str, int] = {}
    for v in mine:
        counts[_backend(v)] = counts.get(_backend(v), 0) + len(v.ports)
    primary = max(sorted(counts), key=lambda b: (counts[b], "legacy" not in b))
    secondary: dict[str, list[ProgrammedView]] = {}
    for v in mine:
        if _backend(v) != primary and v.ports:
            secondary.setdefault(_backend(v), []).append(v)
    return [v for v in mine if _backend(v) == primary], secondary


def decide_mode(snapshot: NodeSnapshot, cluster: ClusterState | None, views: list[ProgrammedView]):
    """Which proxy programs this node: proxy_mode.decide's decision (mode, evidence, ...)."""
    from kubectl_proxydoctor.proxy_mode import decide

    return decide(snapshot, cluster, views)


def unknown_rule_states(snapshot: NodeSnapshot, mode: str):
    """The rule sources of ``mode`` (every mode when it is not one) that are not known: could not
    be read, or were not captured (sources.rules_state decides)."""
    from kubectl_proxydoctor.sources import unknown_rules

    return unknown_rules(snapshot, (mode,) if mode in MODES else tuple(MODES))


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


def _node_origin(snapshot: NodeSnapshot, node_name: str | None) -> str:
    if node_name:
        return "--node-name / --node"
    return "this host's name" if snapshot.origin == "live" else "meta.json"


def api_problem(cluster: ClusterState | None) -> str | None:
    """Why the API view cannot be trusted for expectations, or None when it can."""
    if cluster is None:
        return "the API was not read"
    bad = [f"{k}: {v}" for k, v in cluster.sources.items() if k in API_LISTS and not str(v).startswith("ok")]
    return "; ".join(bad) or None


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


def proxied_families(
    snapshot: NodeSnapshot,
    views: list[ProgrammedView],
    mode: str,
    cluster: ClusterState | None,
    node: str | None,
) -> set[int]:
    """The IP families kube-proxy runs on this node: those it programmed services or its base
    chains/tables for (kube-proxy runs dual-stack whenever the node supports both), else the
    family of the Node's InternalIP, else IPv4."""
    families = {fam for v in views if v.mode == mode for (_, fam) in v.ports}
    if mode == "iptables":
        from kubectl_proxydoctor.proxy_mode import iptables_dumps

        scanned = set()  # from the chain facts of the one parse of each dump (no text scan)
        for dump in iptables_dumps(snapshot):
            scanned.add(dump.file)
            if any(c.name == "KUBE-SERVICES" for c in dump.chains):
                families.add(6 if dump.label.startswith("ip6") else 4)
        for fam, prefix in ((4, "iptables"), (6, "ip6tables")):
            for suffix in ("-save.txt", "-nft-save.txt", "-legacy-save.txt"):
                name = prefix + suffix
                if name not in scanned and ":KUBE-SERVICES " in (snapshot.text(name) or ""):
                    families.add(fam)
    elif mode == "nftables":
        text = snapshot.text("nft-ruleset.json") or ""
        for fam, family in ((4, "ip"), (6, "ip6")):
            if re.search(rf'"family":\s*"{family}",\s*"name":\s*"kube-proxy"', text):
                families.add(fam)
    if not families and cluster is not None:
        for addr in ((cluster.node(node) or {}).get("status") or {}).get("addresses") or []:
            if addr.get("type") == "InternalIP" and isinstance(addr.get("address"), str):
                families.add(6 if ":" in addr["address"] else 4)
    return families or {4}


def _name_key(name: ServicePortName) -> tuple[str, str, str, str]:
    return (name.namespace, name.name, name.port, name.protocol)


def _statuses(report: NodeReport, expected, primary: list[ProgrammedView]) -> list[ServiceStatus]:
    programmed: dict[ServicePortName, list] = {}
    for view in primary:
        for (name, _fam), port in view.ports.items():
            programmed.setdefault(name, []).append(port)
    wanted: dict[ServicePortName, list] = {}
    if expected is not None:
        for (name, _fam), port in expected.ports.items():
            wanted.setdefault(name, []).append(port)
    drifting = {
        (f.service, f.port, f.protocol)
        for f in report.findings
        if f.severity in ("error", "warning") and f.code not in ADVISORY_CODES and f.service
    }
    out = []
    for name in sorted(set(programmed) | set(wanted), key=_name_key):
        exp, prog = wanted.get(name, []), programmed.get(name, [])
        if exp and not prog:
            status = "not-programmed"
        elif prog and not exp:
            status = "not-expected"
        elif (name.service, name.port, name.protocol) in drifting:
            status = "drift"
        else:
            status = "ok"
        fronts = [f.address for p in exp for f in p.frontends] or [
            f.address for p in prog for f in p.frontends
        ]
        out.append(
            ServiceStatus(
                name=name,
                status=status,  # type: ignore[arg-type]
                service_type=exp[0].service_type if exp else "",
                frontends=list(dict.fromkeys(fronts)),
                expected_endpoints=[str(e) for e in sorted({e for p in exp for e in p.reachable_endpoints})],
                programmed_endpoints=[str(e) for e in sorted(
                    {t.endpoint for p in prog for f in p.frontends for t in f.targets if t.weight != 0}
                )],
            )
        )
    return out



def _identity(snapshot: NodeSnapshot, cluster: ClusterState | None, views: list[ProgrammedView], mode: str):
    """kube-proxy's version and the layout generation of ``mode``'s rules (from what is already parsed)."""
    from kubectl_proxydoctor.kube_proxy_version import identify

    rulesets = [v.raw for v in views if v.mode == "iptables" and v.raw is not None]
    return identify(snapshot, cluster, rulesets, mode)


def analyse(
    snapshot: NodeSnapshot,
    cluster: ClusterState | None,
    node_name: str | None = None,
    *,
    namespace: str | None = None,
) -> NodeReport:
    """Analyse one node: programmed views vs the API (node-only checks when ``cluster`` is None).

    With ``namespace``, only that namespace's service ports are reported (node-level findings stay)."""
    with gc_paused():
        return _analyse(snapshot, cluster, node_name, namespace)


def _analyse(
    snapshot: NodeSnapshot, cluster: ClusterState | None, node_name: str | None, namespace: str | None
) -> NodeReport:
    from kubectl_proxydoctor.checks import CheckContext, run_checks
    from kubectl_proxydoctor.expected import expected_for_node

    node = node_name or snapshot.node
    if node is None and cluster is not None and len(cluster.nodes) == 1:
        node = cluster.nodes[0]["metadata"].get("name")
    views, sources = interpret_views(snapshot)
    decision = decide_mode(snapshot, cluster, views)
    mode, evidence = str(decision.mode), [str(e) for e in decision.evidence]
    report = NodeReport(node=node, mode=mode, snapshot=snapshot, views=views)
    report.modes_found = sorted({v.mode for v in views if v.ports})
    report.sources = dict(sources)
    for name, why in snapshot.unavailable().items():
        if name not in report.sources:  # the modes' own entries already say why
            report.sources[name] = why
    report.notes.append(f"mode {mode}: " + "; ".join(evidence))
    problem = api_problem(cluster)
    usable = cluster if problem is None else None
    insane: list[Finding] = []
    if usable is not None:
        from kubectl_proxydoctor.api_sanity import api_sanity

        programmed = frozenset(name.service for v in views for (name, _fam) in v.ports)
        insane = api_sanity(usable, node, namespace, _node_origin(snapshot, node_name), programmed)
        if insane:
            expected_for_node(usable, node)  # a malformed object is still named (ParseError), not hidden
            usable = None
            problem = "the answer does not look like this node's cluster (" + ", ".join(
                f.code for f in insane) + ")"
    if cluster is None:
        report.sources["api"] = "unavailable: not read"
    elif problem:
        report.sources["api"] = f"unavailable: {problem}"
    else:
        report.sources["api"] = "ok" if cluster.origin == "live" else f"ok ({cluster.origin})"
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
    skip = mode in SKIP_MODES
    if skip:
        report.notes.append(SKIP_MODES[mode])
    if usable is not None:
        views = relabel_views(views, usable)
        report.views = views
    primary, _secondary = split_views(views, mode if mode in MODES else None)
    unknown = [] if mode in SKIP_MODES else unknown_rule_states(snapshot, mode)
    failed = {m: why for m, why in sources.items() if why.startswith("unreadable") and mode in (m, "unknown")}
    for name, why in failed.items():
        report.sources[name] = why
    for rules in unknown:  # the rules the comparison needed: unknown, not merely not captured
        if report.sources.get(rules.mode) == "not captured":
            report.sources[rules.mode] = "unavailable: not captured"
    root_causes: list[Finding] = list(insane)
    if unknown or failed:
        report.unreadable.append("rules")
        skip = True  # unknown is not empty: nothing is compared with rules that were not read
        what = "; ".join([r.summary() for r in unknown] + [f"{k}: {v}" for k, v in failed.items()])
        report.notes.append(f"{what}: service ports not compared with the API (finding rules-unknown)")
        root_causes.append(rules_unknown_finding(unknown, failed, node, live=snapshot.origin == "live"))
    identity = _identity(snapshot, usable, views, mode)
    report.kube_proxy = identity
    report.notes.extend(identity.notes)
    expected = (
        expected_for_node(usable, node, semantics=identity.semantics)
        if usable is not None and not skip else None
    )
    ctx = CheckContext(
        snapshot=snapshot,
        views=views,
        cluster=usable,
        expected=expected,
        extra={
            "mode": mode if mode in MODES else None,
            "skip_kube_proxy": skip,
            "node": node,
            "proxy_mode": decision,
            "families": proxied_families(snapshot, views, mode, usable, node),
        },
    )
    report.cluster = usable
    found = _dedupe(run_checks(ctx), ctx.extra.get("drift_secondary", []))
    report.findings = order_by_cause(root_causes + found)
    report.expected = expected
    if expected is not None:  # without the API there is nothing to give a port a status against
        report.services = _statuses(report, expected, primary)
    if namespace:
        report.findings = [
            f for f in report.findings if f.service is None or f.service.startswith(namespace + "/")
        ]
        report.services = [s for s in report.services if s.name.namespace == namespace]
    return report
