"""Does the API answer look like the node's cluster? Checked before anything is compared with it.

An answer with no Service at all, one without ``default/kubernetes`` (every cluster has it), or a
node name the API has no Node for (a wrong ``--node-name``, a hostname that differs from the Node
name) would turn every programmed port into ``stale-service`` or every Local-policy endpoint into
``stale-endpoint``. Each gives one finding, and nothing is compared with that answer (exit 3).
"""

from __future__ import annotations

from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.model import Finding

RECAPTURE = "`kubectl get services,endpointslices,nodes -A -o json > api.json`"


def node_in_api(cluster: ClusterState, node: str) -> bool | None:
    """True/False when the answer tells whether Node ``node`` exists, None when it cannot tell."""
    live = cluster.sources.get(f"get nodes/{node}")
    if live is not None:
        if live == "ok (not found)":
            return False
        return True if live.startswith("ok") else None
    if cluster.node(node) is not None:
        return True
    return False if cluster.nodes else None  # an api.json without Nodes cannot tell


def _context(cluster: ClusterState) -> str:
    return "the live API" if cluster.origin == "live" else cluster.origin


def api_sanity(cluster: ClusterState, node: str | None, namespace: str | None,
               node_from: str = "the capture", programmed: frozenset[str] = frozenset()) -> list[Finding]:
    """Findings for an API answer that cannot be the node's cluster as it is (empty: it looks sane).

    ``namespace``: the answer was limited to one namespace (an empty namespace is possible then).
    ``programmed``: the services ("ns/name") the node has rules for; default/kubernetes missing from
    the answer is only evidence of a partial answer when kube-proxy programmed it from its own."""
    findings: list[Finding] = []
    where = _context(cluster)
    if namespace is None and not cluster.services:
        findings.append(Finding(
            "api-no-services", "warning",
            f"the API answer ({where}) holds no Service at all, not even default/kubernetes: it is not a "
            "whole cluster's answer (wrong context, an empty or truncated api.json), so nothing was "
            "compared with it and no programmed port is called stale",
            evidence=[f"{where}: 0 Services, {len(cluster.endpointslices)} EndpointSlices, "
                      f"{len(cluster.nodes)} Nodes"],
            fix=f"check the context (`kubectl config current-context`, `kubectl get services -A`), then "
                f"capture the API again: {RECAPTURE}"))
    elif namespace in (None, "default") and "default/kubernetes" in programmed and not any(
            s["metadata"].get("namespace") == "default" and s["metadata"].get("name") == "kubernetes"
            for s in cluster.services):
        findings.append(Finding(
            "api-no-kubernetes-service", "warning",
            f"the API answer ({where}) has {len(cluster.services)} Services but not default/kubernetes, "
            "which every cluster has and kube-proxy programmed on this node: the answer is partial "
            "(filtered or edited), so nothing was compared with it",
            evidence=[f"{where}: no Service default/kubernetes",
                      "the node's rules hold default/kubernetes (kube-proxy saw it in its API)"],
            fix=f"capture the whole API answer: {RECAPTURE}"))
    if node is not None and node_in_api(cluster, node) is False:
        known = sorted(str(n["metadata"].get("name")) for n in cluster.nodes)[:10]
        findings.append(Finding(
            "node-not-in-api", "warning",
            f"node {node!r} (from {node_from}) is not a Node in the API answer ({where}): which endpoints "
            "are local to it is unknown, so nothing was compared (Local-policy endpoints would all look "
            "stale)", evidence=[f"Nodes in the answer: {', '.join(known) or 'none'}"],
            fix=(f"re-run with `--node-name {known[0]}` if that is this node (`kubectl get nodes -o wide`)"
                 if len(known) == 1 else "name the node as the API knows it: `kubectl get nodes -o wide`, "
                 "then re-run with `--node-name` and that name")))
    return findings
