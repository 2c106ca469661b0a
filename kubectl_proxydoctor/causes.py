"""Findings ordered by cause: root causes first, each followed by the findings it explains.

A kube-proxy that does not run or whose syncs fail explains every per-port difference between its
rules and the API (they are what it did not sync); rules that could not be read and an API answer
that cannot be the node's cluster explain why nothing was compared. Consequences keep their own
severity and fix, and name their cause (``caused_by``).
"""

from __future__ import annotations

from kubectl_proxydoctor.model import SEVERITY_ORDER, Finding

# root causes, most fundamental first
ROOT_CAUSES = (
    "rules-unknown", "api-no-services", "api-no-kubernetes-service", "node-not-in-api",
    "kube-proxy-not-running", "kube-proxy-not-answering", "sync-failing", "kube-proxy-unreadable",
)
# causes that stop the comparison itself (nothing about any service was compared)
STOPS_COMPARISON = ("rules-unknown", "api-no-services", "api-no-kubernetes-service", "node-not-in-api")
# causes that explain per-port drift: the rules are what kube-proxy last synced
EXPLAINS_DRIFT = ("kube-proxy-not-running", "sync-failing")
DRIFT_CODES = frozenset({
    "not-programmed", "wrong-protocol", "stale-service", "missing-endpoint", "stale-endpoint",
    "chain-missing", "missing-frontend", "stale-frontend", "wrong-port", "source-ranges-mismatch",
    "traffic-policy-mismatch", "no-endpoints-verdict", "uneven-probability", "uneven-weights",
    "affinity-mismatch",
})


def order_by_cause(findings: list[Finding]) -> list[Finding]:
    """Root causes first (in ROOT_CAUSES order), each followed by the findings it explains (marked
    ``caused_by``), then every other finding in the order given."""
    rank = {code: i for i, code in enumerate(ROOT_CAUSES)}
    roots = sorted((f for f in findings if f.code in rank),
                   key=lambda f: (rank[f.code], SEVERITY_ORDER[f.severity]))
    cause = next((f for f in roots if f.code in EXPLAINS_DRIFT), None)
    ordered: list[Finding] = []
    rest = [f for f in findings if f.code not in rank]
    for root in roots:
        ordered.append(root)
        if root is cause:
            for f in rest:
                if f.code in DRIFT_CODES:
                    f.caused_by = root.code
                    ordered.append(f)
    ordered.extend(f for f in rest if f.caused_by is None)
    return ordered
