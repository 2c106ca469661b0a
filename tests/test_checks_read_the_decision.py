"""Structure checks given a NodeState's context read its mode decision, also when it names no
kube-proxy mode; only a bare context (no decision) falls back to the capture's hints."""

from __future__ import annotations

import json

from kubectl_proxydoctor.checks import CheckContext
from kubectl_proxydoctor.checks.nftables_structure import current_mode
from kubectl_proxydoctor.proxy_mode import ProxyModeDecision
from kubectl_proxydoctor.snapshot import NodeSnapshot


def _snapshot() -> NodeSnapshot:
    return NodeSnapshot.from_files({"meta.json": json.dumps({"node": "n1", "mode": "iptables"}),
                                    "kube-proxy-mode.txt": "iptables\n"})


def test_a_decision_that_is_not_kube_proxy_is_not_overridden_by_the_capture_hints():
    for decided in ("unknown", "cilium"):
        ctx = CheckContext(snapshot=_snapshot(), mode=None, decision=ProxyModeDecision(mode=decided))
        assert current_mode(ctx) is None


def test_a_bare_context_still_reads_the_capture():
    assert current_mode(CheckContext(snapshot=_snapshot())) == "iptables"
    ctx = CheckContext(snapshot=_snapshot(), mode="nftables", decision=ProxyModeDecision(mode="nftables"))
    assert current_mode(ctx) == "nftables"


def test_iptables_structure_reads_the_decision_too():
    from kubectl_proxydoctor.checks.iptables_structure import _current_mode

    ctx = CheckContext(snapshot=_snapshot(), mode=None, decision=ProxyModeDecision(mode="cilium"))
    assert _current_mode(ctx) is None
    assert _current_mode(CheckContext(snapshot=_snapshot())) == "iptables"
