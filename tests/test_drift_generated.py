"""Reconciliation on nodes from bench/generate.py (an independent kube-proxy v1.30 rule writer):
a synced node has no drift, and every change made to the API after the sync is found."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.generate import GenEndpoint, generate_cluster, iptables_save, ready, write_capture
from kubectl_proxydoctor.analysis import analyse
from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.snapshot import NodeSnapshot


def _analyse(path: Path):
    snapshot = NodeSnapshot.load(path)
    return analyse(snapshot, ClusterState.from_json_text(snapshot.text("api.json") or ""))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_synced_node_has_no_drift(tmp_path: Path, seed: int) -> None:
    cluster = generate_cluster(400, (0, 12), seed=seed, affinity_share=0.2, lb_share=0.2, local_share=0.5)
    report = _analyse(write_capture(cluster, tmp_path / "node"))
    errors = [f"{f.code} {f.service}:{f.port} {f.message}" for f in report.findings if f.severity == "error"]
    assert errors == []
    assert {s.status for s in report.services} == {"ok"}
    assert len(report.services) == sum(len(s.ports) for s in cluster.services)


def test_api_changes_after_sync_are_found(tmp_path: Path) -> None:
    cluster = generate_cluster(300, (2, 6), seed=7)
    rules = iptables_save(cluster)
    multi = [s for s in cluster.services if len(ready(s)) > 1 and s.type == "ClusterIP" and len(s.ports) == 1]
    removed_ep = multi[0].endpoints.pop(multi[0].endpoints.index(ready(multi[0])[0]))
    added = multi[1]
    added_ip = "10.200.0.7"
    added.endpoints.append(GenEndpoint(added_ip, cluster.node))
    gone = multi[2]
    cluster.services.remove(gone)
    path = write_capture(cluster, tmp_path / "node", iptables_text=rules)
    report = _analyse(path)
    got = sorted((f.code, f.service) for f in report.findings if f.severity == "error")
    assert got == sorted(
        [
            ("stale-endpoint", f"{multi[0].namespace}/{multi[0].name}"),
            ("missing-endpoint", f"{added.namespace}/{added.name}"),
            ("stale-service", f"{gone.namespace}/{gone.name}"),
        ]
    )
    text = json.dumps([f.to_json() for f in report.findings])
    assert removed_ep.ip in text and added_ip in text
    statuses = {s.name.service: s.status for s in report.services}
    assert statuses[f"{gone.namespace}/{gone.name}"] == "not-expected"
    assert statuses[f"{added.namespace}/{added.name}"] == "drift"
