"""Fleet scan: collect and analyse every (selected) node with bounded concurrency.

Each worker keeps one node's snapshot and report only while it analyses it; what stays is a small
NodeSummary per node and, per service port, how many nodes programmed which endpoint set, so
memory grows with the concurrency and the number of distinct answers, not with the node count.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from kubectl_proxydoctor.errors import EXIT_USAGE, ProxyDoctorError
from kubectl_proxydoctor.exit_status import ExitStatus, Scope, status_of
from kubectl_proxydoctor.report import NodeReport

MAX_NODE_EXAMPLES = 5  # node names kept per distinct answer, for messages


@dataclass
class NodeSummary:
    """What a scan keeps of one node."""

    node: str
    mode: str = "unknown"
    kernel: str | None = None
    kube_proxy: str = "unknown"  # healthy | failing | not running | unknown
    errors: int = 0
    warnings: int = 0
    codes: list[str] = field(default_factory=list)
    failure: str | None = None  # why the node could not be collected or analysed

    def to_json(self) -> dict:
        return {"node": self.node, "mode": self.mode, "kernel": self.kernel,
                "kube_proxy": self.kube_proxy, "errors": self.errors, "warnings": self.warnings,
                "codes": self.codes, "failure": self.failure}


@dataclass
class CrossNodeDrift:
    """A service port that nodes expecting the same endpoints programmed differently."""

    service_port: str
    answers: list[tuple[str, int, list[str]]]  # (endpoints, node count, example nodes)

    def to_json(self) -> dict:
        return {"service_port": self.service_port,
                "answers": [{"programmed_endpoints": e, "nodes": n, "examples": ex}
                            for e, n, ex in self.answers]}


@dataclass
class ScanResult:
    nodes: list[NodeSummary] = field(default_factory=list)
    drift: list[CrossNodeDrift] = field(default_factory=list)

    @property
    def exit_code(self) -> ExitStatus:
        """exit_status's fleet precedence: a node's drift (or drift across nodes) wins over a node
        that could not be read."""
        return status_of(problem=any(n.errors for n in self.nodes) or bool(self.drift),
                         unknown=any(n.failure for n in self.nodes), scope=Scope.FLEET)

    def to_json(self) -> dict:
        return {"nodes": [n.to_json() for n in self.nodes],
                "cross_node_drift": [d.to_json() for d in self.drift]}


class _Tally:
    """Per (service port, expected endpoints): how many nodes programmed which endpoint set."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], Counter[str]] = {}
        self.examples: dict[tuple[str, str, str], list[str]] = {}
        self.texts: dict[str, str] = {}  # digest -> endpoints text (shared across ports)

    def _digest(self, endpoints: list[str]) -> str:
        text = ",".join(sorted(endpoints))
        digest = hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
        self.texts.setdefault(digest, text)
        return digest

    def add(self, node: str, report: NodeReport) -> None:
        for status in report.services:
            if status.status in ("not-expected", "unknown"):
                continue
            key = (status.name.key, self._digest(status.expected_endpoints))
            programmed = self._digest(status.programmed_endpoints)
            self.counts.setdefault(key, Counter())[programmed] += 1
            examples = self.examples.setdefault((*key, programmed), [])
            if len(examples) < MAX_NODE_EXAMPLES:
                examples.append(node)

    def drift(self) -> list[CrossNodeDrift]:
        out = []
        for (port, expected), counter in sorted(self.counts.items()):
            if len(counter) < 2:
                continue
            answers = [(self.texts[d] or "(none)", n, self.examples[(port, expected, d)])
                       for d, n in counter.most_common()]
            out.append(CrossNodeDrift(port, answers))
        return out


def summarise(node: str, report: NodeReport) -> NodeSummary:
    """The small record a scan keeps of one analysed node."""
    snapshot = report.snapshot
    kernel_text = snapshot.text("kernel.txt") if snapshot is not None else None
    kernel = kernel_text.strip() if kernel_text else None
    codes = sorted({f.code for f in report.findings if f.severity != "info"})
    if any(c in ("sync-failing", "kube-proxy-stuck") for c in codes):
        health = "failing"
    elif snapshot is not None and snapshot.has("kube-proxy-healthz.json"):
        health = "healthy"
    elif snapshot is not None and snapshot.has("kube-proxy-metrics.txt"):
        health = "running"
    else:
        health = "not answering"
    return NodeSummary(node=node, mode=report.mode, kernel=kernel, kube_proxy=health,
                       errors=sum(f.severity == "error" for f in report.findings),
                       warnings=sum(f.severity == "warning" for f in report.findings), codes=codes)


def scan(nodes: Iterable[str], collect: Callable[[str], object], analyse: Callable[[object, str], NodeReport],
         concurrency: int = 10, on_done: Callable[[NodeSummary], None] | None = None) -> ScanResult:
    """Collect and analyse every node with at most ``concurrency`` in flight; ``on_done`` streams
    each node's summary as it finishes. A node that fails is a summary with ``failure`` set."""
    if concurrency < 1:
        raise ProxyDoctorError("--concurrency must be at least 1", exit_code=EXIT_USAGE)
    tally = _Tally()
    result = ScanResult()

    def work(node: str) -> tuple[NodeSummary, NodeReport | None]:
        try:
            report = analyse(collect(node), node)
        except ProxyDoctorError as e:
            return NodeSummary(node=node, failure=str(e)), None
        summary = summarise(node, report)
        if "rules" in report.unreadable:  # unknown, not "no rules": kept out of the cross-node tally
            unknown = next((f for f in report.findings if f.code == "rules-unknown"), None)
            summary.failure = unknown.message if unknown else "kube-proxy's rules could not be read"
            return summary, None
        return summary, report

    pending: set[Future] = set()
    queue = iter(nodes)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="scan") as pool:
        while True:
            while len(pending) < concurrency:  # submit lazily: only `concurrency` nodes in memory
                node = next(queue, None)
                if node is None:
                    break
                pending.add(pool.submit(work, node))
            if not pending:
                break
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                summary, report = future.result()
                if report is not None:
                    tally.add(summary.node, report)
                result.nodes.append(summary)
                if on_done is not None:
                    on_done(summary)
                del report
    result.nodes.sort(key=lambda n: n.node)
    result.drift = tally.drift()
    return result
