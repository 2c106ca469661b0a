"""Issue 16 item 8: findings ordered by cause (root causes first, consequences grouped under them),
a stopped kube-proxy seen the same way from every capture, and a garbage metrics file that does not
hide a valid /healthz."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kubectl_proxydoctor.analysis import analyse
from kubectl_proxydoctor.checks import CheckContext, run_checks
from kubectl_proxydoctor.cli import main
from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.snapshot import NodeSnapshot

FIXTURES = Path(__file__).parent / "fixtures"
HEALTH = ("sync-failing", "kube-proxy-not-running")


def _report(path: Path):
    snap = NodeSnapshot.load(path)
    return analyse(snap, ClusterState.from_json_text(snap.text("api.json") or ""))


@pytest.mark.parametrize("fixture", ["iptables/stale-endpoint", "nftables/stale-endpoint",
                                     "iptables/deleted-service", "iptables/new-service"])
def test_a_stopped_kube_proxy_comes_before_the_drift_it_explains(fixture):
    report = _report(FIXTURES / fixture)
    codes = [f.code for f in report.findings]
    assert codes[0] == "kube-proxy-not-running", codes
    drift = [f for f in report.findings if f.severity == "error"]
    assert drift and all(f.caused_by == "kube-proxy-not-running" for f in drift)
    # grouped: every consequence right after its cause, before anything else
    assert [f.caused_by for f in report.findings[1:1 + len(drift)]] == ["kube-proxy-not-running"] * len(drift)


def test_sync_failing_explains_the_drift_and_json_names_the_cause(capsys):
    with pytest.raises(SystemExit):
        main(["check", "--from", str(FIXTURES / "iptables" / "sync-failing"), "-o", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["findings"][0]["code"] == "sync-failing"
    errors = [f for f in doc["findings"] if f["severity"] == "error" and f["code"] != "sync-failing"]
    assert errors and {f["caused_by"] for f in errors} == {"sync-failing"}


def test_text_groups_consequences_under_their_cause(capsys):
    with pytest.raises(SystemExit):
        main(["check", "--from", str(FIXTURES / "iptables" / "stale-endpoint")])
    out = capsys.readouterr().out
    findings = out[out.index("findings ("):]
    assert findings.index("kube-proxy-not-running") < findings.index("caused by this: 1 finding below") \
        < findings.index("stale-endpoint")
    assert "\n    ERROR   stale-endpoint" in findings  # indented under its cause


def test_garbage_metrics_do_not_hide_a_503_healthz(tmp_path):
    capture = tmp_path / "node"
    shutil.copytree(FIXTURES / "iptables" / "sync-failing", capture)
    (capture / "kube-proxy-metrics.txt").write_text("<html>this is not prometheus</html>\n")
    findings = run_checks(CheckContext(NodeSnapshot.load(capture)), only=HEALTH)
    codes = {(f.code, f.severity) for f in findings}
    assert ("sync-failing", "error") in codes  # from /healthz 503 alone
    assert ("kube-proxy-unreadable", "warning") in codes
    [sync] = [f for f in findings if f.code == "sync-failing"]
    assert any("/healthz 503" in e for e in sync.evidence)


def test_empty_process_file_is_not_running_and_a_running_process_is_not_answering(tmp_path):
    files = {"iptables-save.txt": (FIXTURES / "iptables/healthy/iptables-save.txt").read_text()}
    snap = NodeSnapshot.from_files({**files, "kube-proxy-cmdline.txt": ""})
    [finding] = run_checks(CheckContext(snap), only=HEALTH)
    assert (finding.code, finding.severity) == ("kube-proxy-not-running", "warning")
    assert "kube-proxy-cmdline.txt: empty" in finding.evidence[0]
    snap = NodeSnapshot.from_files({**files, "kube-proxy-cmdline.txt": "/usr/local/bin/kube-proxy --v=2\n"})
    snap.sources["kube-proxy-metrics.txt"] = "unavailable: 127.0.0.1:10249/metrics: nothing listens"
    [finding] = run_checks(CheckContext(snap), only=HEALTH)
    assert finding.code == "kube-proxy-not-answering" and "--v=2" in finding.evidence[0]


def test_collect_node_sh_refused_wording_is_not_running():
    """collect-node.sh's words for a refused connection mean "not running", as collect's do."""
    files = {"iptables-save.txt": (FIXTURES / "iptables/healthy/iptables-save.txt").read_text()}
    meta = {"sources": {
        "kube-proxy-metrics": "unavailable: 127.0.0.1:10249/metrics: nothing listens on 127.0.0.1:10249 "
                              "(kube-proxy not running here?)",
        "kube-proxy-healthz": "unavailable: 127.0.0.1:10256/healthz: nothing listens on 127.0.0.1:10256 "
                              "(kube-proxy not running here?)"}}
    snap = NodeSnapshot.from_files({**files, "meta.json": json.dumps(meta)})
    [finding] = run_checks(CheckContext(snap), only=HEALTH)
    assert (finding.code, finding.severity) == ("kube-proxy-not-running", "warning")
