"""The checks engine: small registered checks that turn a CheckContext into Findings.

A check is a function ``(ctx) -> Iterable[Finding]`` registered with ``@check(name, ...)``.
Modules in this package register themselves when imported by ``load_checks``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kubectl_proxydoctor.model import SEVERITY_ORDER, Finding, ProgrammedView
from kubectl_proxydoctor.snapshot import NodeSnapshot

if TYPE_CHECKING:
    from kubectl_proxydoctor.node_state import NodeState
    from kubectl_proxydoctor.proxy_mode import ProxyModeDecision

CheckFn = Callable[["CheckContext"], Iterable[Finding]]


@dataclass
class DriftResult:
    """drift_compare's findings, computed once per context: all of them, and those from a second
    backend of the running mode (analysis drops the ones that repeat the main backend's)."""

    findings: list[Finding] = field(default_factory=list)
    secondary: list[Finding] = field(default_factory=list)


@dataclass
class CheckCache:
    """What several checks share, computed once per context by the first that needs it."""

    drift: DriftResult | None = None
    ipvs_state: Any = None  # modes.ipvs.state.IpvsState, or the ProxyDoctorError reading it gave
    ipvs_names: dict | None = None  # frontend -> (ServicePortName, kind) from the API


@dataclass
class CheckContext:
    """What checks look at: the node snapshot, its programmed views, the API's view, and what
    NodeState decided (``of(state)``); a test may give only some of it."""

    snapshot: NodeSnapshot
    views: list[ProgrammedView] = field(default_factory=list)
    cluster: Any | None = None  # kubectl_proxydoctor.cluster.ClusterState when the API is usable
    expected: Any | None = None  # what this node should have, from the API
    mode: str | None = None  # the decided mode when it is kube-proxy's (None: not decided)
    skip_kube_proxy: bool = False  # no service port is compared (another proxy, or rules unknown)
    node: str | None = None  # the node's name in the API
    decision: ProxyModeDecision | None = None  # proxy_mode.decide's answer
    families: set[int] | None = None  # the IP families kube-proxy runs on the node
    namespace: str | None = None  # only this namespace's service ports are reported (svc, check -n)
    cache: CheckCache = field(default_factory=CheckCache)

    @classmethod
    def of(cls, state: NodeState, namespace: str | None = None) -> CheckContext:
        """The context of a built NodeState (the checks read only this)."""
        return cls(snapshot=state.snapshot, views=state.views, cluster=state.usable, expected=state.expected,
                   mode=state.kube_proxy_mode, skip_kube_proxy=state.skip_kube_proxy, node=state.node,
                   decision=state.decision, families=state.families, namespace=namespace)

    def running_mode(self) -> str | None:
        """NodeState's decided mode (None when it is not one of kube-proxy's: cilium, unknown...);
        only for a bare context without a decision (tests, one check run alone), the mode kube-proxy
        reports (/proxyMode capture), else meta.json's ``mode``."""
        if self.mode or self.decision is not None:  # the one decision was made: never re-decided here
            return self.mode
        text = self.snapshot.text("kube-proxy-mode.txt")
        if text and text.strip():
            return text.strip().lower()
        mode = self.snapshot.meta.get("mode")
        return str(mode).lower() if mode else None

    def drift_secondary(self) -> list[Finding]:
        """The drift findings from a second backend (empty when drift was not compared)."""
        return self.cache.drift.secondary if self.cache.drift is not None else []


@dataclass(frozen=True)
class RegisteredCheck:
    name: str
    fn: CheckFn
    needs_api: bool
    description: str


REGISTRY: dict[str, RegisteredCheck] = {}


def check(name: str, *, needs_api: bool = False) -> Callable[[CheckFn], CheckFn]:
    """Register a check under a unique name; ``needs_api`` skips it when the API was not read."""

    def register(fn: CheckFn) -> CheckFn:
        if name in REGISTRY and REGISTRY[name].fn is not fn:
            raise ValueError(f"check {name!r} registered twice")
        REGISTRY[name] = RegisteredCheck(name, fn, needs_api, (fn.__doc__ or "").strip())
        return fn

    return register


def load_checks() -> dict[str, RegisteredCheck]:
    """Import every module in this package so their checks register."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return REGISTRY


def run_checks(ctx: CheckContext, only: Iterable[str] | None = None) -> list[Finding]:
    """Run the registered checks (those the context can feed) and sort findings by severity."""
    load_checks()
    wanted = set(only) if only is not None else None
    findings: list[Finding] = []
    for name, registered in sorted(REGISTRY.items()):
        if wanted is not None and name not in wanted:
            continue
        if registered.needs_api and ctx.cluster is None:
            continue
        findings.extend(registered.fn(ctx))
    findings.sort(key=lambda f: (SEVERITY_ORDER[f.severity], f.service or "", f.port or "", f.code))
    return findings
