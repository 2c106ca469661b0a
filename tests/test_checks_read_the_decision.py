"""Structure checks given a NodeState's context read its mode decision, also when it names no
kube-proxy mode; only a bare context (no decision) falls back to the capture's hints."""

from __future__ import annotations

import json

from kubectl_proxydoctor.checks import CheckContext
from kubectl_proxydoctor.proxy_mode import ProxyModeDecision
from kubectl_proxydoctor.snapshot import NodeSnapshot


def _snapshot() -> NodeSnapshot:
    return NodeSnapshot.from_files({"meta.json": json.dumps({"node": "n1", "mode": "iptables"}),
                                    "kube-proxy-mode.txt": "iptables\n"})


def test_a_decision_that_is_not_kube_proxy_is_not_overridden_by_the_capture_hints():
    for decided in ("unknown", "cilium"):
        ctx = CheckContext(snapshot=_snapshot(), mode=None, decision=ProxyModeDecision(mode=decided))
        assert ctx.running_mode() is None


def test_a_bare_context_still_reads_the_capture():
    assert CheckContext(snapshot=_snapshot()).running_mode() == "iptables"
    ctx = CheckContext(snapshot=_snapshot(), mode="nftables", decision=ProxyModeDecision(mode="nftables"))
    assert ctx.running_mode() == "nftables"


def test_no_check_keeps_its_own_copy_of_the_mode_fallback():
    """Every check reads CheckContext.running_mode(): the capture's hints are read in one place."""
    from pathlib import Path

    checks = Path(__file__).resolve().parent.parent / "kubectl_proxydoctor" / "checks"
    readers = [p.name for p in checks.glob("*.py") if "kube-proxy-mode.txt" in p.read_text()]
    assert readers == ["__init__.py"]
