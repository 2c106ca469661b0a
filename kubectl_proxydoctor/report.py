"""NodeReport: the result of analysing one node, as `check`, `svc`, JSON and the TUI show it.

The JSON form is the stable interface described in README "JSON report".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from kubectl_proxydoctor.exit_status import ExitStatus, status_of
from kubectl_proxydoctor.model import Finding, ProgrammedView, ServicePortName

# "unknown": the port's rules are in a layout the interpreter does not understand (not compared)
PortStatus = Literal["ok", "drift", "not-programmed", "not-expected", "unknown"]


@dataclass(slots=True)  # one per service port (10k+)
class ServiceStatus:
    """One service port on this node: what the API expects next to what was programmed."""

    name: ServicePortName
    status: PortStatus
    service_type: str = ""
    frontends: list[str] = field(default_factory=list)
    expected_endpoints: list[str] = field(default_factory=list)
    programmed_endpoints: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "service": self.name.service,
            "port": self.name.port,
            "protocol": self.name.protocol,
            "type": self.service_type,
            "status": self.status,
            "frontends": list(self.frontends),
            "expected_endpoints": list(self.expected_endpoints),
            "programmed_endpoints": list(self.programmed_endpoints),
        }


@dataclass
class NodeReport:
    """Everything known about one node after analysis."""

    node: str | None
    mode: str  # iptables | ipvs | nftables | unknown (or "cilium")
    modes_found: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    services: list[ServiceStatus] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    views: list[ProgrammedView] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. "API forbidden: node-only checks"
    snapshot: Any = None  # NodeSnapshot
    cluster: Any = None  # ClusterState | None
    expected: Any = None  # kubectl_proxydoctor.expected.ExpectedNode | None
    unreadable: list[str] = field(default_factory=list)  # asked-for sources that could not be read
    kube_proxy: Any = None  # kubectl_proxydoctor.kube_proxy_version.KubeProxyIdentity | None
    state: Any = None  # kubectl_proxydoctor.node_state.NodeState the report was made from

    @property
    def partial(self) -> bool:
        """True when a source that was asked for could not be read."""
        return bool(self.unreadable) or any(
            not str(v).startswith(("ok", "not captured")) for v in self.sources.values() if v)

    @property
    def exit_code(self) -> ExitStatus:
        """UNKNOWN (3) when an asked-for source (the API, the rules) could not be read or rules are in
        a layout not understood, else PROBLEM (1) on error findings, else OK (0): exit_status's node
        precedence."""
        not_understood = any(f.code == "unknown-layout" for f in self.findings)
        return status_of(problem=any(f.severity == "error" for f in self.findings),
                         unknown=bool(self.unreadable) or not_understood)

    def to_json(self) -> dict:
        return {
            "node": self.node,
            "mode": self.mode,
            "modes_found": list(self.modes_found),
            "sources": dict(self.sources),
            "notes": list(self.notes),
            "kube_proxy": self.kube_proxy.to_json() if self.kube_proxy is not None else None,
            "services": [s.to_json() for s in self.services],
            "findings": [f.to_json() for f in self.findings],
        }
