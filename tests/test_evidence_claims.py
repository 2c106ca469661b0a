"""Messages say only what the evidence shows, without noise (issue 16 item 9)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubectl_proxydoctor.analysis import analyse
from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.model import Finding
from kubectl_proxydoctor.snapshot import NodeSnapshot

FIXTURES = Path(__file__).parent / "fixtures"
SCENARIOS = sorted(str(p.parent.relative_to(FIXTURES)) for p in FIXTURES.glob("*/*/meta.json"))


def _report(scenario: str):
    snap = NodeSnapshot.load(FIXTURES / scenario)
    return analyse(snap, ClusterState.from_json_text(snap.text("api.json")), snap.node)


def test_stale_endpoint_does_not_claim_the_pod_was_deleted():
    (f,) = [f for f in _report("iptables/stale-endpoint").findings if f.code == "stale-endpoint"]
    assert "no EndpointSlice of the service lists it any more" in f.message
    assert "pod deleted" not in f.message and "deleted" not in f.message


def test_restore_failures_are_counted_not_generalised():
    (f,) = [f for f in _report("iptables/sync-failing").findings if f.code == "sync-failing"]
    assert "every" not in f.message
    assert "iptables-restore failed 3 times since kube-proxy started" in f.message
    assert "kubeproxy_sync_proxy_rules_iptables_restore_failures_total 3" in f.evidence[0]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_expected_local_policy_behaviour_is_not_a_finding(scenario):
    """default/itp-local (internalTrafficPolicy Local, no endpoint on the node) is in every capture:
    dropping its traffic there is the documented behaviour, not a blackhole."""
    findings = _report(scenario).findings
    assert not [f for f in findings if f.code == "local-blackhole"]
    assert not [f for f in findings if f.fix.startswith("Expected")]


def test_unreferenced_chains_under_a_flushed_parent_name_it_as_the_root_cause():
    found = [f for f in _report("iptables/chain-flushed").findings if f.code == "unreferenced-chain"]
    assert len(found) == 3
    for f in found:
        assert "parent chain KUBE-SVC-CDGGSHYLG3RE2FKL was flushed" in f.message
        assert "earlier sync" not in f.message
        assert ":KUBE-SVC-CDGGSHYLG3RE2FKL (0 rules)" in f.evidence
        assert "kubectl -n kube-system delete $(kubectl -n kube-system get pods -l k8s-app=kube-proxy " \
               "--field-selector spec.nodeName=pdnode1 -o name)" in f.fix


def test_evidence_lines_are_not_repeated():
    (f,) = [f for f in _report("iptables/deleted-service").findings if f.code == "stale-service"]
    assert len(f.evidence) == len(set(f.evidence)) == 7  # the capture's evidence held 3 lines twice
    assert Finding("x", "info", "m", evidence=["a", "b", "a"]).evidence == ["a", "b"]


def test_ipvs_leftover_is_shown_by_its_address_and_its_tui_row_counts_its_finding():
    import json

    from rich.console import Console

    from kubectl_proxydoctor.render.report_text import render_check
    from kubectl_proxydoctor.tui.rows import build_rows

    snap = NodeSnapshot.load(FIXTURES / "ipvs" / "healthy")
    api = json.loads(snap.text("api.json"))
    api["items"] = [i for i in api["items"] if i["metadata"]["name"] != "web"]
    snap.files["api.json"] = json.dumps(api)
    report = analyse(snap, ClusterState.from_json_text(snap.text("api.json")), snap.node)
    (row,) = [r for r in build_rows(report) if r.status.name.label == "10.96.100.10:80/TCP"]
    assert [f.code for f in row.findings] == ["stale-service"]
    console = Console(record=True, width=200)
    render_check(report, console)
    text = console.export_text()
    assert "10.96.100.10:80/TCP" in text and "/10.96.100.10:80:" not in text
