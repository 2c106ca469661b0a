"""NodeState: everything decided about one node, built once per run by ``build_node_state``.

The walk of a run (README "Design"): the snapshot (capture files, read once) and the cluster
(api.json or the live API, decoded once into a ClusterState) go in; each mode's rules are parsed and
interpreted once (one error policy: ``ModeRules``), the one mode decision is made
(``proxy_mode.decide``), the rule sources' readability is decided (``sources.rules_state``), the
API is judged usable or not, the kube-proxy version and layout are identified, and the expected view
is computed. Commands, checks and renderers read this state; none of them derives these again.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from types import ModuleType
from typing import TYPE_CHECKING

from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.errors import ProxyDoctorError
from kubectl_proxydoctor.gcpause import gc_paused
from kubectl_proxydoctor.model import Finding, ProgrammedView
from kubectl_proxydoctor.modes import MODES
from kubectl_proxydoctor.primary_views import split_views
from kubectl_proxydoctor.snapshot import NodeSnapshot

if TYPE_CHECKING:
    from kubectl_proxydoctor.expected import ExpectedNode
    from kubectl_proxydoctor.kube_proxy_version import KubeProxyIdentity
    from kubectl_proxydoctor.node_facts import NodeFacts
    from kubectl_proxydoctor.proxy_mode import ProxyModeDecision
    from kubectl_proxydoctor.sources import RulesState

API_LISTS = ("list services", "list endpointslices")
# proxies whose service handling kube-proxy's rules do not describe -> why the comparison is skipped
SKIP_MODES = {
    "cilium": "Cilium's kube-proxy replacement owns services on this node: kube-proxy checks skipped",
    "userspace": "userspace mode (removed in Kubernetes 1.26) is not supported: kube-proxy checks skipped",
    "kernelspace": "Windows kernelspace mode is not supported: kube-proxy checks skipped",
}


class Outcome(StrEnum):
    """What interpreting one mode's rules gave."""

    OK = "ok"  # service ports found
    NO_RULES = "no rules"  # read, and no service port in them (or the files say why there are none)
    NOT_READ = "not read"  # the rule files could not be read or were not captured
    UNREADABLE = "unreadable"  # the rules were read but are not in a format understood (ParseError)
    FAILED = "failed"  # the interpreter itself failed (a bug): unknown, exactly like UNREADABLE
    NOT_BUILT = "not built"  # no interpreter for this mode in this build


@dataclass(frozen=True)
class ModeRules:
    """One mode's rules after interpretation: the views, and what became of them.

    The one error policy: a ParseError is UNREADABLE, any other exception from an interpreter is
    FAILED; both leave the mode's rules unknown (never "no rules") in every command."""

    mode: str
    outcome: Outcome
    views: tuple[ProgrammedView, ...] = ()
    label: str = ""  # what `check`'s sources show: "ok", "ok (no rules)", "unreadable: ...", ...

    @property
    def failed(self) -> bool:
        """The rules were there but could not be understood (unknown, exit 3)."""
        return self.outcome in (Outcome.UNREADABLE, Outcome.FAILED)


def mode_module(mode: str) -> ModuleType | None:
    """The mode's interpreter package, or None when it is not (yet) installed."""
    try:
        module = importlib.import_module(f"kubectl_proxydoctor.modes.{mode}")
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("kubectl_proxydoctor.modes"):
            return None
        raise
    return module if hasattr(module, "interpret") else None


def interpret_mode(snapshot: NodeSnapshot, mode: str, cluster: ClusterState | None = None) -> ModeRules:
    """One mode's views under the one error policy (``ModeRules``)."""
    module = mode_module(mode)
    if module is None:
        return ModeRules(mode, Outcome.NOT_BUILT,
                         label="unavailable: no interpreter for this mode in this build")
    try:
        if mode == "nftables":  # LoadBalancer ingress IPs label its frontends: from the one ClusterState
            found = module.interpret(snapshot, lb_ips=cluster.load_balancer_ips() if cluster else set())
        else:
            found = module.interpret(snapshot)
    except ProxyDoctorError as e:
        return ModeRules(mode, Outcome.UNREADABLE, label=f"unreadable: {e}")
    except Exception as e:  # noqa: BLE001 - an interpreter bug: the mode's rules are unknown, never a traceback
        return ModeRules(mode, Outcome.FAILED,
                         label=f"unreadable: the {mode} interpreter failed ({type(e).__name__}: {e})")
    views = tuple(found)
    if any(v.ports for v in views):
        return ModeRules(mode, Outcome.OK, views, "ok")
    label = _no_rules(snapshot, mode)
    return ModeRules(mode, Outcome.NO_RULES if label.startswith("ok") else Outcome.NOT_READ, views, label)


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


def interpret_views(snapshot: NodeSnapshot, cluster: ClusterState | None = None
                    ) -> tuple[list[ProgrammedView], dict[str, str]]:
    """Every mode's programmed views, and per mode "ok", "ok (no rules)" or why it was not read."""
    rules = [interpret_mode(snapshot, m, cluster) for m in MODES]
    return [v for r in rules for v in r.views], {r.mode: r.label for r in rules}


def relabel_views(views: list[ProgrammedView], cluster: ClusterState) -> list[ProgrammedView]:
    """IPVS keeps no names: give its frontends the API's service port names."""
    if not any(v.mode == "ipvs" for v in views):
        return views
    from kubectl_proxydoctor.modes.ipvs.labels import relabel

    return [relabel(v, cluster) if v.mode == "ipvs" else v for v in views]


def api_problem(cluster: ClusterState | None) -> str | None:
    """Why the API view cannot be trusted for expectations, or None when it can."""
    if cluster is None:
        return "the API was not read"
    bad = [f"{k}: {v}" for k, v in cluster.sources.items() if k in API_LISTS and not str(v).startswith("ok")]
    return "; ".join(bad) or None


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
            if dump.has_chain("KUBE-SERVICES"):
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


@dataclass
class NodeState:
    """One node, decided once: read it, never derive it again."""

    snapshot: NodeSnapshot
    cluster: ClusterState | None  # as read (api.json or the live API), usable or not
    node: str | None  # the node's name in the API
    node_origin: str  # where the name came from (for api_sanity's messages)
    rules: dict[str, ModeRules]  # per mode, in MODES order
    views: list[ProgrammedView]  # every mode's views (IPVS relabelled from a usable API)
    decision: ProxyModeDecision  # proxy_mode.decide: the one answer to "which mode"
    api_problem: str | None  # why the API is not used for expectations (None: it is)
    insane: list[Finding]  # api_sanity's findings (the answer is not this node's cluster)
    usable: ClusterState | None  # the cluster when it can be trusted for expectations
    unknown_rules: list[RulesState]  # the running mode's rule sources that are unknown
    identity: KubeProxyIdentity
    families: set[int]
    primary: list[ProgrammedView] = field(default_factory=list)
    secondary: dict[str, list[ProgrammedView]] = field(default_factory=dict)

    @property
    def mode(self) -> str:
        return str(self.decision.mode)

    @property
    def kube_proxy_mode(self) -> str | None:
        """The decided mode when it is one of kube-proxy's own (iptables, nftables, ipvs)."""
        return self.mode if self.mode in MODES else None

    @property
    def modes_found(self) -> list[str]:
        return sorted({v.mode for v in self.views if v.ports})

    @property
    def sources(self) -> dict[str, str]:
        return {m: r.label for m, r in self.rules.items()}

    @property
    def failed_rules(self) -> dict[str, str]:
        """Modes whose rules could not be understood and that matter for the running mode."""
        return {m: r.label for m, r in self.rules.items() if r.failed and self.mode in (m, "unknown")}

    @cached_property
    def expected(self) -> ExpectedNode | None:
        """What the API says this node should have (None when the API is not usable or no service
        port is compared); computed once, when first asked (`status` and `trace` never ask)."""
        from kubectl_proxydoctor.expected import expected_for_node

        if self.usable is None or self.skip_kube_proxy:
            return None
        return expected_for_node(self.usable, self.node, semantics=self.identity.semantics)

    @cached_property
    def facts(self) -> NodeFacts:
        """Addresses, endpoints and pods for `trace`'s fates, from the cluster as read when its
        Services and EndpointSlices were listed; else endpoints stay unknown (None), never empty
        (a live API that refused the lists is an empty ClusterState)."""
        from kubectl_proxydoctor.node_facts import facts_with

        listed = self.cluster if api_problem(self.cluster) is None else None
        return facts_with(self.snapshot, listed, self.node)

    @property
    def skip_kube_proxy(self) -> bool:
        """No service port is compared: another proxy owns services, or the rules are unknown."""
        return self.mode in SKIP_MODES or bool(self.unknown_rules or self.failed_rules)


def _node_name(snapshot: NodeSnapshot, cluster: ClusterState | None, node_name: str | None) -> str | None:
    node = node_name or snapshot.node
    if node is None and cluster is not None and len(cluster.nodes) == 1:
        node = cluster.nodes[0]["metadata"].get("name")
    return node


def _node_origin(snapshot: NodeSnapshot, node_name: str | None) -> str:
    if node_name:
        return "--node-name / --node"
    return "this host's name" if snapshot.origin == "live" else "meta.json"


def build_node_state(snapshot: NodeSnapshot, cluster: ClusterState | None = None,
                     node_name: str | None = None, *, namespace: str | None = None) -> NodeState:
    """The node's state, built once (the cyclic GC paused: millions of acyclic objects)."""
    with gc_paused():
        return _build(snapshot, cluster, node_name, namespace)


def _build(snapshot: NodeSnapshot, cluster: ClusterState | None, node_name: str | None,
           namespace: str | None) -> NodeState:
    from kubectl_proxydoctor.expected import expected_for_node
    from kubectl_proxydoctor.kube_proxy_version import identify
    from kubectl_proxydoctor.proxy_mode import decide
    from kubectl_proxydoctor.sources import unknown_rules

    node = _node_name(snapshot, cluster, node_name)
    rules = {m: interpret_mode(snapshot, m, cluster) for m in MODES}
    views = [v for r in rules.values() for v in r.views]
    decision = decide(snapshot, cluster, views)
    mode = str(decision.mode)
    problem = api_problem(cluster)
    usable = cluster if problem is None else None
    insane: list[Finding] = []
    origin = _node_origin(snapshot, node_name)
    if usable is not None:
        from kubectl_proxydoctor.api_sanity import api_sanity

        programmed = frozenset(name.service for v in views for (name, _fam) in v.ports)
        insane = api_sanity(usable, node, namespace, origin, programmed)
        if insane:
            expected_for_node(usable, node)  # a malformed object is still named (ParseError), not hidden
            usable = None
            problem = "the answer does not look like this node's cluster (" + ", ".join(
                f.code for f in insane) + ")"
    if usable is not None:
        views = relabel_views(views, usable)
    primary, secondary = split_views(views, mode if mode in MODES else None)
    needed = (mode,) if mode in MODES else tuple(MODES)  # the rules the comparison needs
    unknown = [] if mode in SKIP_MODES else unknown_rules(snapshot, needed)
    iptables_rulesets = [v.raw for v in views if v.mode == "iptables" and v.raw is not None]
    identity = identify(snapshot, usable, iptables_rulesets, mode)
    state = NodeState(
        snapshot=snapshot, cluster=cluster, node=node, node_origin=origin, rules=rules, views=views,
        decision=decision, api_problem=problem, insane=insane, usable=usable, unknown_rules=unknown,
        identity=identity, families=proxied_families(snapshot, views, mode, usable, node),
        primary=primary, secondary=secondary)
    return state
