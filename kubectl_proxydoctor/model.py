"""The mode-independent programmed view: what each service port really reaches on a node.

Every mode interpreter (iptables, nftables, IPVS) turns its rules into these types, and every
check, renderer and the TUI works on them only.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from functools import lru_cache
from socket import AF_INET, inet_pton
from typing import Generic, Literal, NamedTuple, TypeVar

from kubectl_proxydoctor.clip import MESSAGE_LIMIT, clip, clip_lines

Severity = Literal["error", "warning", "info"]
FrontendKind = Literal["cluster-ip", "external-ip", "load-balancer", "node-port"]
SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


def port_label(service: str | None, port: str | None, protocol: str | None) -> str:
    """How a finding's or status's service port is shown: ``ns/name:port/PROTO``; a frontend no
    Service claims (``service`` without a namespace, e.g. ``10.96.0.5:80``) as ``10.96.0.5:80/PROTO``."""
    if service and "/" not in service:
        return f"{service}/{protocol or '?'}"
    return f"{service}:{port or '-'}/{protocol or '?'}"


class ServicePortName(NamedTuple):
    """A service port as kube-proxy names it: namespace/name:portname plus protocol; ordered by
    those four. A named tuple: every view and the expected node key 10k+ ports by it (hash in C)."""

    namespace: str
    name: str
    port: str
    protocol: str  # "TCP" | "UDP" | "SCTP"

    @property
    def service(self) -> str:
        # no namespace: a frontend no Service claims (an IPVS leftover), named after its address
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}:{self.port}" if self.namespace else self.name

    @property
    def label(self) -> str:
        """For people: ``ns/name:port/TCP`` (``-`` for an unnamed port), ``10.96.0.5:80/TCP`` for a
        frontend no Service claims."""
        return port_label(self.service, self.port, self.protocol)

    @property
    def key(self) -> str:
        """Stable key, e.g. ``default/web:http/TCP``."""
        return f"{self}/{self.protocol}"


def ip_sort_key(ip: str) -> tuple[int, int, str]:
    """Addresses in numeric order (10.0.0.9 before 10.0.0.10), IPv4 before IPv6, anything else last."""
    try:  # the common case, a canonical dotted IPv4 address, parsed in C (100k+ of them, no cache)
        return (4, int.from_bytes(inet_pton(AF_INET, ip)), "")
    except (OSError, ValueError, TypeError):  # not canonical IPv4 (inet_pton: no leading zeros)
        return _other_ip_sort_key(ip)


@lru_cache(maxsize=65536)
def _other_ip_sort_key(ip: str) -> tuple[int, int, str]:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return (9, 0, ip)
    return (addr.version, int(addr), "")


class Endpoint(NamedTuple):
    """One backend address as programmed (ip and target port); ordered numerically by address.

    A named tuple, not a dataclass: a big node hashes and compares 100k+ of them in sets and dicts,
    and a tuple's hash and equality run in C (three times faster than a dataclass's)."""

    ip: str
    port: int

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"

    def sort_key(self) -> tuple[int, int, str, int]:
        """The numeric order as a key (``sorted(eps, key=Endpoint.sort_key)`` parses each address
        once, where comparing with ``<`` parses both addresses at every comparison): ip_sort_key's
        three parts, then the port, in one call per endpoint."""
        ip = self[0]
        try:
            return (4, int.from_bytes(inet_pton(AF_INET, ip)), "", self[1])
        except (OSError, ValueError, TypeError):
            return (*_other_ip_sort_key(ip), self[1])

    # numeric order, not the tuple's (string) order; comparing with a plain tuple is not supported
    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Endpoint):
            return NotImplemented
        return self.sort_key() < other.sort_key()

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Endpoint):
            return NotImplemented
        return self.sort_key() <= other.sort_key()

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Endpoint):
            return NotImplemented
        return self.sort_key() > other.sort_key()

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Endpoint):
            return NotImplemented
        return self.sort_key() >= other.sort_key()


@dataclass(slots=True)  # slots: one per endpoint per frontend
class Target:
    """An endpoint as reached from one frontend, with the chance a new connection picks it."""

    endpoint: Endpoint
    probability: float
    weight: int | None = None  # IPVS real-server weight; 0 means draining
    evidence: list[str] = field(default_factory=list)


@dataclass
class Frontend:
    """An address a client uses to reach a service port, and where its new connections go."""

    kind: FrontendKind
    ip: str | None  # None for a NodePort on every node address
    port: int
    protocol: str
    targets: list[Target] = field(default_factory=list)
    policy: Literal["cluster", "local"] = "cluster"
    no_endpoints: str | None = None  # "reject" | "drop" when there are no targets
    masquerade: str = ""  # human description of when traffic is masqueraded
    source_ranges: list[str] = field(default_factory=list)
    affinity_seconds: int | None = None
    scheduler: str | None = None  # IPVS scheduler
    evidence: list[str] = field(default_factory=list)
    # set when the rules behind this frontend are in a layout the interpreter does not know: its
    # targets are not compared with the API (a warning names the rule instead)
    unknown_layout: str | None = None

    @property
    def address(self) -> str:
        if self.kind == "node-port":
            return f"nodeport:{self.port}" if self.ip is None else f"{self.ip}:{self.port}(nodeport)"
        return str(Endpoint(self.ip or "", self.port))

    @property
    def endpoints(self) -> list[Endpoint]:
        return sorted({t.endpoint for t in self.targets})


@dataclass
class ProgrammedPort:
    """Everything one proxy mode programmed for one service port in one IP family."""

    name: ServicePortName
    family: int  # 4 or 6
    frontends: list[Frontend] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)

    @property
    def endpoints(self) -> list[Endpoint]:
        """Endpoints reachable through the cluster-policy frontends (ClusterIP first)."""
        cluster = [f for f in self.frontends if f.kind == "cluster-ip"]
        pool = cluster or self.frontends
        return sorted({t.endpoint for f in pool for t in f.targets})

    @property
    def all_endpoints(self) -> list[Endpoint]:
        return sorted({t.endpoint for f in self.frontends for t in f.targets})


RawT = TypeVar("RawT")


@dataclass
class ProgrammedView(Generic[RawT]):
    """One proxy mode's rules (one backend, one family or both) read into service ports.

    ``raw`` is what the view was built from, typed per mode: ``ProgrammedView[Ruleset]`` (iptables,
    modes/iptables/parse), ``ProgrammedView[NftRuleset]`` (nftables), ``ProgrammedView[IpvsState]``
    (IPVS, modes/ipvs/state)."""

    mode: Literal["iptables", "nftables", "ipvs"]
    source: str  # e.g. "iptables-nft", "iptables-legacy", "nftables", "ipvs"
    ports: dict[tuple[ServicePortName, int], ProgrammedPort] = field(default_factory=dict)
    raw: RawT | None = None
    # rules of kube-proxy's chains in no layout the interpreter knows (iptables: modes.iptables.layout)
    unknown_layout: list = field(default_factory=list)

    def port(self, name: ServicePortName, family: int = 4) -> ProgrammedPort | None:
        return self.ports.get((name, family))

    def add(self, port: ProgrammedPort) -> ProgrammedPort:
        return self.ports.setdefault((port.name, port.family), port)

    @property
    def endpoint_count(self) -> int:
        return sum(len(p.all_endpoints) for p in self.ports.values())


@dataclass
class Finding:
    """A diagnosis: what is wrong, on which object, the evidence, and how to fix it."""

    code: str
    severity: Severity
    message: str
    service: str | None = None  # "namespace/name"
    port: str | None = None  # port name
    protocol: str | None = None
    evidence: list[str] = field(default_factory=list)
    fix: str = ""
    mode: str | None = None
    caused_by: str | None = None  # the root-cause finding's code this one follows from

    def __post_init__(self) -> None:
        # what the evidence shows, once and bounded: a megabyte rule comment is cut with a note
        self.message = clip(self.message, MESSAGE_LIMIT)
        self.evidence = clip_lines(self.evidence)
        self.fix = clip(self.fix, MESSAGE_LIMIT)

    @classmethod
    def for_port(cls, name: ServicePortName, **kw: object) -> Finding:
        return cls(service=name.service, port=name.port, protocol=name.protocol, **kw)  # type: ignore[arg-type]

    def to_json(self) -> dict:
        return {
            "code": self.code,
            "severity": self.severity,
            "service": self.service,
            "port": self.port,
            "protocol": self.protocol,
            "message": self.message,
            "evidence": list(self.evidence),
            "fix": self.fix,
            "mode": self.mode,
            "caused_by": self.caused_by,
        }


@dataclass(frozen=True)
class Packet:
    """A packet to trace: destination, protocol, and optionally its source."""

    dst: str
    port: int
    protocol: str = "TCP"
    src: str | None = None

    def __str__(self) -> str:
        src = f"{self.src} -> " if self.src else ""
        return f"{src}{Endpoint(self.dst, self.port)}/{self.protocol.lower()}"


@dataclass
class TraceStep:
    """One rule (or lookup) the packet went through, and why it matched."""

    chain: str
    rule: str
    why: str = ""


@dataclass
class TraceOutcome:
    """One way the packet can end: DNAT to an endpoint, reject, drop or accept."""

    verdict: Literal["dnat", "reject", "drop", "accept", "no-match"]
    destination: Endpoint | None = None
    probability: float = 1.0
    masquerade: bool = False
    service: ServicePortName | None = None
    path: list[TraceStep] = field(default_factory=list)


@dataclass
class TraceResult:
    """Every outcome of one packet through one mode's rules."""

    packet: Packet
    mode: str
    source: str
    outcomes: list[TraceOutcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
