"""Types shared by the migration checks: the inputs they read and the result each one returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from kubectl_proxydoctor.errors import EXIT_DRIFT, EXIT_OK, EXIT_UNREADABLE
from kubectl_proxydoctor.snapshot import NodeSnapshot

Target = Literal["nftables", "iptables"]
Status = Literal["pass", "warn", "fail", "unknown"]
Verdict = Literal["ready", "not ready", "could not tell", "already"]
STATUS_ORDER = {"fail": 0, "unknown": 1, "warn": 2, "pass": 3}
VERDICT_EXIT = {"ready": EXIT_OK, "not ready": EXIT_DRIFT, "could not tell": EXIT_UNREADABLE,
                "already": EXIT_OK}  # already in the target mode: nothing to switch


@dataclass
class CheckResult:
    """One readiness check on one scope ("cluster" or "node <name>")."""

    check: str  # stable id, e.g. "kernel-version"
    title: str
    scope: str
    status: Status
    summary: str
    evidence: list[str] = field(default_factory=list)
    action: str = ""  # what to do (empty when nothing)
    essential: bool = False  # an "unknown" here means the verdict cannot be given

    def to_json(self) -> dict:
        return {
            "check": self.check,
            "title": self.title,
            "scope": self.scope,
            "status": self.status,
            "summary": self.summary,
            "evidence": list(self.evidence),
            "action": self.action,
            "essential": self.essential,
        }


@dataclass
class NodeInput:
    """One node the checks can look at: its capture (or live read) and its name."""

    snapshot: NodeSnapshot
    state: Any = None  # its kubectl_proxydoctor.node_state.NodeState (migrate.engine.run builds it)

    @property
    def name(self) -> str:
        return self.snapshot.node or self.snapshot.origin

    @property
    def scope(self) -> str:
        return f"node {self.name}"


@dataclass
class MigrateContext:
    """Everything the checks read: target mode, API state, kube-proxy config and node captures."""

    target: Target
    cluster: Any | None = None  # ClusterState
    config: Any | None = None  # migrate.facts.ProxyFacts
    nodes: list[NodeInput] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def result(check: str, title: str, scope: str, status: Status, summary: str,
           evidence: list[str] | None = None, action: str = "", essential: bool = False) -> CheckResult:
    """Shorthand constructor used by the check modules."""
    return CheckResult(check, title, scope, status, summary, list(evidence or []), action, essential)
