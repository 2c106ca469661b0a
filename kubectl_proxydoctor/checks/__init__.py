"""The checks engine: small registered checks that turn a CheckContext into Findings.

A check is a function ``(ctx) -> Iterable[Finding]`` registered with ``@check(name, ...)``.
Modules in this package register themselves when imported by ``load_checks``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kubectl_proxydoctor.model import SEVERITY_ORDER, Finding, ProgrammedView
from kubectl_proxydoctor.snapshot import NodeSnapshot

CheckFn = Callable[["CheckContext"], Iterable[Finding]]


@dataclass
class CheckContext:
    """What checks look at: the node snapshot, its programmed views, and the API's view."""

    snapshot: NodeSnapshot
    views: list[ProgrammedView] = field(default_factory=list)
    cluster: Any | None = None  # kubectl_proxydoctor.cluster.ClusterState when the API was read
    expected: Any | None = None  # what this node should have, from the API
    extra: dict[str, Any] = field(default_factory=dict)


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
