"""serve's pure parts, driven by an injected clock (no sleeping): grace and flap damping, programming
latency, the back-off budget, and the verdict of real fixture captures."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kubectl_proxydoctor.analysis import analyse
from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.serve.budget import Budget
from kubectl_proxydoctor.serve.engine import Engine, Options
from kubectl_proxydoctor.serve.grace import DriftTracker
from kubectl_proxydoctor.serve.latency import NODE_KEY, LatencyTracker
from kubectl_proxydoctor.serve.sources import CaptureDir
from kubectl_proxydoctor.serve.verdict import DriftKey, summarise
from kubectl_proxydoctor.snapshot import NodeSnapshot
from tests.conftest import FIXTURES
from tests.serve_helpers import drop_endpoint

A = DriftKey("default/web:http/TCP", "drift", "IPv4")
B = DriftKey("default/dns:dns/UDP", "not-programmed", "IPv6")


def test_grace_reports_only_after_grace_and_ends_after_hold() -> None:
    t = DriftTracker(grace=10, hold=5)
    assert t.update({A}, 0).started == []
    assert t.pending == {A} and t.reported == set()
    assert t.update({A}, 9.9).started == []
    assert t.update({A}, 10).started == [A]
    assert t.reported == {A}
    assert t.update(set(), 11).ended == []  # gone for 1 s < hold
    assert t.reported == {A}
    assert t.update(set(), 15).ended == [A]
    assert t.reported == set() and t.pending == set()


def test_short_drift_never_reported_and_forgotten() -> None:
    t = DriftTracker(grace=10, hold=5)
    t.update({A}, 0)
    t.update(set(), 3)
    tr = t.update(set(), 6)  # away 6 s >= hold: forgotten
    assert tr.started == tr.ended == [] and t.tracks == {}
    assert t.update({A}, 7).started == []  # a new drift: the grace clock restarts
    assert t.update({A}, 16).started == []
    assert t.update({A}, 17).started == [A]


def test_flapping_drift_keeps_first_seen_and_is_reported() -> None:
    t = DriftTracker(grace=10, hold=5)
    started = []
    for now, seen in ((0, True), (3, False), (6, True), (8, False), (10, True), (12, False)):
        started += t.update({A} if seen else set(), now).started
    assert started == [A]  # seen on and off since t=0: reported at t=10, not restarted each time
    assert t.update(set(), 13).ended == []  # last seen at 10: away only 3 s
    assert t.update({A}, 14).ended == []
    assert t.reported == {A}


def test_sync_in_progress_postpones_reporting() -> None:
    t = DriftTracker(grace=0)
    assert t.update({A, B}, 0, sync_in_progress=True).started == []
    assert t.pending == {A, B}
    assert t.update({A}, 1, sync_in_progress=True).started == []  # B fixed by the sync
    tr = t.update({A}, 2, sync_in_progress=False)
    assert tr.started == [A] and t.tracks.keys() == {A}


def test_grace_zero_reports_and_clears_at_once() -> None:
    t = DriftTracker(grace=0)
    assert t.update({A}, 0).started == [A]
    assert t.update(set(), 1).ended == [A]
    with pytest.raises(ValueError):
        DriftTracker(grace=-1)


def test_latency_resolves_when_rules_reflect_the_change() -> None:
    lt = LatencyTracker(timeout=30)
    before = {"default/web": ("v1",)}
    after = {"default/web": ("v2",)}
    lt.record("default/web", at=100.0, seq=5, what="MODIFIED EndpointSlice default/web-x")
    # an analysis of an older API view does not decide it
    assert lt.observe(4, 100.5, before, before, lambda k: False) == [] and lt.waiting == 1
    assert lt.observe(5, 101.0, before, after, lambda k: True) == []  # needs rules, still drifting
    assert lt.observe(5, 102.0, after, after, lambda k: True) == []
    [res] = lt.observe(5, 103.25, after, after, lambda k: False)
    # the rules changed between the read at 102 (still drifting) and the one at 103.25
    assert (res.low, res.high) == (pytest.approx(2.0), pytest.approx(3.25))
    assert res.latency == pytest.approx(2.625) and res.key == "default/web" and lt.waiting == 0


def test_latency_skips_changes_needing_no_rules_and_times_out() -> None:
    lt = LatencyTracker(timeout=10)
    sig = {"default/web": ("v1",), "default/db": ("a",)}
    lt.record("default/web", 0.0, 1, "MODIFIED Service default/web (annotation)")
    assert lt.observe(1, 1.0, sig, sig, lambda k: True) == [] and lt.waiting == 0
    lt.record("default/db", 0.0, 2, "MODIFIED Service default/db")
    changed = {"default/web": ("v1",), "default/db": ("b",)}
    assert lt.observe(2, 5.0, sig, changed, lambda k: True) == []
    [res] = lt.observe(2, 10.0, changed, changed, lambda k: True)
    assert res.latency is None and res.waited == pytest.approx(10.0)
    lt.record(NODE_KEY, 20.0, 3, "MODIFIED Node n1 (labels)")
    [res] = lt.observe(3, 21.0, changed, changed, lambda k: False)
    assert res.key == NODE_KEY and res.latency == pytest.approx(0.5) and res.high == pytest.approx(1.0)


def test_budget_backs_off_and_returns() -> None:
    b = Budget(interval=30, share=0.5)
    assert b.after_check(2.0) == (30, None) and not b.backing_off
    wanted, line = b.after_check(40.0)
    assert wanted == pytest.approx(80.0) and b.backing_off and "backing off to 80.0 s" in line
    assert b.after_check(41.0)[1] is None  # no new line for a small change
    assert b.after_check(1000.0)[0] == pytest.approx(600.0)  # capped at max_factor x interval
    wanted, line = b.after_check(3.0)
    assert wanted == 30 and "back to the 30 s interval" in line


def _verdict(name: str):
    snap = NodeSnapshot.load(FIXTURES / name)
    cluster = ClusterState.from_json_text(snap.text("api.json"))
    return summarise(analyse(snap, cluster))


def test_verdict_of_fixtures() -> None:
    healthy = _verdict("iptables/healthy")
    assert healthy.known and healthy.drifts == set() and healthy.summary.startswith("ok: 16")
    stale = _verdict("iptables/stale-endpoint")
    assert stale.drifts == {A}
    assert stale.findings[("error", "stale-endpoint")] == 1
    assert set(healthy.signatures) == set(stale.signatures)
    assert healthy.signatures["default/web"] != stale.signatures["default/web"]
    assert healthy.signatures["default/dns"] == stale.signatures["default/dns"]
    failing = _verdict("iptables/sync-failing")  # queued 70 s before capture: stuck, not syncing
    assert not failing.sync_in_progress and "stuck" in failing.sync_note
    assert DriftKey("default/web-affinity:http/TCP", "drift", "IPv4") in failing.drifts


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_engine_on_a_capture_with_an_injected_clock(tmp_path: Path) -> None:
    capture = tmp_path / "node"
    shutil.copytree(FIXTURES / "iptables/healthy", capture)
    clock = FakeClock()
    lines: list[str] = []
    engine = Engine(CaptureDir(capture), None, Options(interval=5, grace=20), clock=clock,
                    wall=lambda: clock.now + 1e9, log=lines.append)
    out = engine.check()
    assert out.verdict is not None and out.verdict.drifts == set()
    assert engine.metrics.last_success._value.get() == pytest.approx(1000.0 + 1e9)
    drop_endpoint(capture / "api.json", "default", "web", "10.244.0.12")
    assert engine.node.changed()
    clock.now += 5
    out = engine.check()
    assert out.verdict.drifts == {A} and out.transitions.started == []
    assert engine.metrics.pending.labels("drift", "IPv4")._value.get() == 1
    assert engine.metrics.drift.labels("drift", "IPv4")._value.get() == 0
    clock.now += 20
    out = engine.check()
    assert out.transitions.started == [A]
    assert engine.metrics.drift.labels("drift", "IPv4")._value.get() == 1
    assert any("drift started: default/web:http/TCP drift IPv4" in line for line in lines)
    (capture / "api.json").write_text("{not json")
    clock.now += 5
    out = engine.check()
    assert out.verdict is None and "api.json" in out.error
    assert engine.metrics.unknown._value.get() == 1
    assert engine.metrics.drift.labels("drift", "IPv4")._value.get() == 1  # unknown keeps the last state
    assert engine.metrics.last_success._value.get() == pytest.approx(1025.0 + 1e9)
    shutil.copy(FIXTURES / "iptables/healthy/api.json", capture / "api.json")
    clock.now += 5
    out = engine.check()
    assert out.transitions.ended == []  # hold = grace = 20 s
    clock.now += 20
    out = engine.check()
    assert out.transitions.ended == [A]
    assert engine.metrics.drift.labels("drift", "IPv4")._value.get() == 0


def test_latency_bounds_from_reads_and_generation_polls() -> None:
    lt = LatencyTracker(timeout=30)
    sig0, sig1 = {"default/web": ("v1",)}, {"default/web": ("v2",)}
    lt.record("default/web", at=10.0, seq=1, what="MODIFIED EndpointSlice default/web-x")
    # a read over [10.5, 11.5] (generation stable) still without the change: lacking it until 11.5
    assert lt.observe(1, (11.5, 10.5), sig0, sig1, lambda k: True) == []
    assert lt.unchanged_rules(12.0) == []  # the ruleset generation did not move: still lacking at 12.0
    assert lt.unchanged_rules(12.5) == []
    # a read over [13.0, 14.0] (stable) finds it: it was there by 13.0
    [res] = lt.observe(1, (14.0, 13.0), sig1, sig1, lambda k: False)
    assert (res.low, res.high, res.latency) == (pytest.approx(2.5), pytest.approx(3.0), pytest.approx(2.75))
    lt.record("default/web", at=20.0, seq=2, what="MODIFIED EndpointSlice default/web-x")
    assert lt.observe(2, (21.0, 20.5), sig1, sig0, lambda k: True) == []
    [res] = lt.unchanged_rules(50.0)
    assert res.latency is None and res.waited == pytest.approx(30.0) and lt.waiting == 0


def test_generation_covers_only_nf_tables_rules() -> None:
    from kubectl_proxydoctor.serve.sources import generation_covers

    assert generation_covers(NodeSnapshot.load(FIXTURES / "iptables/healthy"))
    assert generation_covers(NodeSnapshot.load(FIXTURES / "nftables/healthy"))
    assert not generation_covers(NodeSnapshot.load(FIXTURES / "iptables/legacy-leftovers"))
    assert not generation_covers(NodeSnapshot.load(FIXTURES / "ipvs/healthy"))


def test_kube_proxy_programming_histogram_next_to_ours() -> None:
    from kubectl_proxydoctor.serve.verdict import programming_delta

    healthy = _verdict("iptables/healthy")
    assert healthy.kube_proxy_programming is not None
    assert healthy.kube_proxy_programming[float("inf")] == 0  # no EndpointSlice trigger times here
    before = {1.0: 2, 5.0: 3, float("inf"): 3}
    after = {1.0: 2, 5.0: 4, float("inf"): 4}
    assert programming_delta(before, after) == ("kube-proxy's network_programming_duration_seconds: "
                                                "1 new observation(s), all <= 5 s")
    assert programming_delta(before, before) == ("kube-proxy recorded no network programming "
                                                 "observation meanwhile")
    assert programming_delta(before, None) == "kube-proxy's network programming metric not readable"


def test_unchanged_node_still_ages_kube_proxys_queued_change(tmp_path: Path) -> None:
    """A sync in progress at the last read becomes "stuck" while nothing changes: the drift the
    sync postponed is reported once the queued change is older than --sync-wait."""
    import json
    from datetime import UTC, datetime

    capture = tmp_path / "node"
    shutil.copytree(FIXTURES / "iptables/healthy", capture)
    drop_endpoint(capture / "api.json", "default", "web", "10.244.0.12")
    metrics = (capture / "kube-proxy-metrics.txt").read_text()
    meta = json.loads((capture / "meta.json").read_text())
    now = datetime.now(UTC)
    meta["captured_at"] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    (capture / "meta.json").write_text(json.dumps(meta))
    lines = [line for line in metrics.splitlines() if not line.startswith(
        ("kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds ",
         "kubeproxy_sync_proxy_rules_last_timestamp_seconds "))]
    lines += [f"kubeproxy_sync_proxy_rules_last_timestamp_seconds {now.timestamp() - 20:.3f}",
              f"kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds {now.timestamp() - 10:.3f}"]
    (capture / "kube-proxy-metrics.txt").write_text("\n".join(lines) + "\n")
    clock = FakeClock()
    engine = Engine(CaptureDir(capture), None, Options(interval=5, grace=0, sync_wait=30), clock=clock,
                    log=lambda _line: None)
    out = engine.check()
    assert out.verdict.sync_in_progress and out.verdict.drifts == {A} and out.transitions.started == []
    clock.now += 10
    engine._retick()  # queued 20 s ago: still in progress
    assert engine.tracker.reported == set()
    clock.now += 15
    engine._retick()  # 35 s > sync_wait: stuck, explains nothing
    assert engine.tracker.reported == {A}
    assert "stuck" in engine.verdict.sync_note


def test_events_for_a_frontend_no_service_claims_go_to_the_node_only() -> None:
    """An IPVS leftover virtual server drifts as '10.96.100.10:80/TCP' (no namespace): no Service
    Event (there is no Service), the Node's Event names it; nothing raises."""
    from kubectl_proxydoctor.serve.events import messages
    from kubectl_proxydoctor.serve.grace import Transitions

    leftover = DriftKey("10.96.100.10:80/TCP", "not-expected", "IPv4")
    tr = Transitions(started=[leftover, A])
    out = messages(tr, "pdnode1")
    objects = [obj for obj, *_ in out]
    assert ("Service", "default", "web") in objects and ("Node", "", "pdnode1") in objects
    assert len(objects) == 2 and "10.96.100.10:80" in out[-1][3]
