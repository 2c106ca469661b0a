"""kube-proxy health checks (sync-failing, kube-proxy-not-running) on the real captures."""

from __future__ import annotations

import json

import pytest

from kubectl_proxydoctor.checks import CheckContext, run_checks
from kubectl_proxydoctor.checks.kube_proxy_health import healthz_status, restore_errors
from kubectl_proxydoctor.nodeinfo import parse_healthz
from kubectl_proxydoctor.snapshot import NodeSnapshot
from tests.conftest import FIXTURES

SYNC_FAILING = FIXTURES / "iptables" / "sync-failing"
HEALTH = ["sync-failing", "kube-proxy-not-running"]


def _files(path) -> dict[str, str]:
    return {p.name: p.read_text() for p in path.iterdir() if p.is_file()}


def test_sync_failing_matches_the_oracle():
    findings = run_checks(CheckContext(NodeSnapshot.load(SYNC_FAILING)), only=HEALTH)
    drift = [d for d in json.loads((SYNC_FAILING / "expected.json").read_text())["drift"]
             if d["kind"] == "sync-failing"]
    assert [(f.code, f.message) for f in findings] == [(d["kind"], d["detail"]) for d in drift]
    assert findings[0].severity == "error" and findings[0].service is None
    assert "kube-proxy.log: iptables-restore: line 62 failed" in findings[0].evidence


def test_sync_failing_without_log_and_meta_still_uses_healthz_time():
    files = _files(SYNC_FAILING)
    del files["kube-proxy.log"]
    meta = json.loads(files["meta.json"])
    del meta["captured_at"]
    files["meta.json"] = json.dumps(meta)
    [finding] = run_checks(CheckContext(NodeSnapshot.from_files(files)), only=HEALTH)
    assert finding.code == "sync-failing"
    assert "a change queued 70 s before the capture is not programmed" in finding.message
    assert "/healthz 503" in finding.message


@pytest.mark.parametrize("fixture", ["iptables/healthy", "iptables/legacy-leftovers",
                                     "nftables/healthy", "iptables/third-party-rules"])
def test_running_healthy_kube_proxy_gives_no_health_finding(fixture):
    snap = NodeSnapshot.load(FIXTURES / fixture)
    assert run_checks(CheckContext(snap), only=HEALTH) == []


def test_recovered_failures_are_only_info():
    files = _files(FIXTURES / "iptables" / "healthy")
    files["kube-proxy-metrics.txt"] += "kubeproxy_sync_proxy_rules_iptables_restore_failures_total 2\n"
    findings = run_checks(CheckContext(NodeSnapshot.from_files(files)), only=HEALTH)
    assert [(f.code, f.severity) for f in findings] == [("restore-failures", "info")]


@pytest.mark.parametrize("fixture", ["iptables/stale-endpoint", "nftables/stale-endpoint"])
def test_stopped_kube_proxy_with_rules_is_a_warning(fixture):
    findings = run_checks(CheckContext(NodeSnapshot.load(FIXTURES / fixture)), only=HEALTH)
    assert [(f.code, f.severity) for f in findings] == [("kube-proxy-not-running", "warning")]


def test_live_connection_refused_is_named():
    files = {"iptables-save.txt": (FIXTURES / "iptables/healthy/iptables-save.txt").read_text()}
    snap = NodeSnapshot.from_files(files)
    snap.sources["kube-proxy-metrics.txt"] = "unavailable: 127.0.0.1:10249/metrics: nothing listens"
    [finding] = run_checks(CheckContext(snap), only=HEALTH)
    assert finding.code == "kube-proxy-not-running"
    assert "nothing listens" in finding.evidence[0]


def test_not_captured_is_info_and_no_rules_is_silent():
    files = {"iptables-save.txt": (FIXTURES / "iptables/healthy/iptables-save.txt").read_text()}
    [finding] = run_checks(CheckContext(NodeSnapshot.from_files(files)), only=HEALTH)
    assert (finding.code, finding.severity) == ("kube-proxy-not-captured", "info")
    assert run_checks(CheckContext(NodeSnapshot.from_files({"kernel.txt": "6.1.0\n"})), only=HEALTH) == []


def test_healthz_status_follows_kube_proxys_rule():
    snap = NodeSnapshot.from_files({})
    healthy = parse_healthz('{"lastUpdated": "2026-11-22 09:00:00.1 +0000 UTC", '
                            '"currentTime": "2026-11-22 09:00:00.1 +0000 UTC", "nodeEligible": true}')
    stale = parse_healthz('{"lastUpdated": "2026-11-22 09:00:00.1 +0000 UTC", '
                          '"currentTime": "2026-11-22 09:02:00.1 +0000 UTC", "nodeEligible": true}')
    assert healthz_status(snap, healthy) == 200
    assert healthz_status(snap, stale) == 503
    snap.meta["kube_proxy_healthz_status"] = 200  # what collect recorded wins
    assert healthz_status(snap, stale) == 200


def test_node_ineligible_is_not_a_sync_failure():
    files = _files(FIXTURES / "iptables" / "healthy")
    doc = json.loads(files["kube-proxy-healthz.json"])
    doc["nodeEligible"] = False
    files["kube-proxy-healthz.json"] = json.dumps(doc)
    findings = run_checks(CheckContext(NodeSnapshot.from_files(files)), only=HEALTH)
    assert [f.code for f in findings] == ["kube-proxy-node-ineligible"]


def test_restore_errors_from_log():
    log = (SYNC_FAILING / "kube-proxy.log").read_text()
    assert restore_errors(log) == ["iptables-restore: line 62 failed", "iptables-restore: line 205 failed"]
