"""NodeState's guarantees: each capture file decoded once per run, one mode decision that `check`,
`status`, `trace` and `migrate-check` share, one interpreter error policy, one exit mapping."""

from __future__ import annotations

import gc
import json
from collections import Counter
from pathlib import Path

import pytest

from kubectl_proxydoctor.analysis import analyse
from kubectl_proxydoctor.cli import main
from kubectl_proxydoctor.cli.status import build_status
from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.exit_status import NPD_CODES, ExitStatus, Scope, combine, status_of
from kubectl_proxydoctor.migrate.facts import current_mode
from kubectl_proxydoctor.model import Finding
from kubectl_proxydoctor.node_state import Outcome, build_node_state
from kubectl_proxydoctor.remote.scan import NodeSummary, ScanResult
from kubectl_proxydoctor.report import NodeReport
from kubectl_proxydoctor.snapshot import NodeSnapshot

FIXTURES = Path(__file__).parent / "fixtures"
CAPTURES = sorted(p.parent for p in FIXTURES.glob("*/*/meta.json") if p.parent.parent.name != "upstream")
JSON_FILES = ("api.json", "nft-ruleset.json", "ip-addr.json", "meta.json", "kube-proxy-healthz.json")


def _run(capsys, *argv: str) -> tuple[int, str]:
    enabled = gc.isenabled()
    try:
        with pytest.raises(SystemExit) as exc:
            main(list(argv))
    finally:
        if enabled:  # `check` turns the collector off for its one-shot process
            gc.enable()
    return int(exc.value.code or 0), capsys.readouterr().out


def _count_decodes(monkeypatch) -> Counter[str]:
    """Count json.loads calls per capture file (matched by the very text the snapshot holds)."""
    names: dict[int, str] = {}
    counts: Counter[str] = Counter()
    real_loads, real_from_files = json.loads, NodeSnapshot.from_files.__func__  # type: ignore[attr-defined]

    def loads(text, *args, **kwargs):
        if id(text) in names:
            counts[names[id(text)]] += 1
        return real_loads(text, *args, **kwargs)

    def from_files(cls, files, origin="memory"):
        names.update({id(text): name for name, text in files.items()})
        return real_from_files(cls, files, origin)

    monkeypatch.setattr(json, "loads", loads)
    monkeypatch.setattr(NodeSnapshot, "from_files", classmethod(from_files))
    return counts


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
@pytest.mark.parametrize("command", ["check", "status", "migrate-check", "trace"])
def test_each_capture_file_is_decoded_once_per_run(capture, command, monkeypatch, capsys):
    counts = _count_decodes(monkeypatch)
    argv = {"migrate-check": ["migrate-check", "nftables"], "trace": ["trace", "--dst", "10.96.0.10:53/udp"]}
    code, out = _run(capsys, *argv.get(command, [command]), "--from", str(capture), "-o", "json")
    assert code in (0, 1, 3) and json.loads(out)
    present = [name for name in JSON_FILES if (capture / name).exists()]
    assert "meta.json" in present and counts["meta.json"] == 1
    assert {name: n for name, n in counts.items() if n > 1} == {}, counts
    if (capture / "api.json").exists():  # the cluster is decoded, exactly once
        assert counts["api.json"] == 1


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_status_check_and_migrate_name_the_same_mode(capture, capsys):
    snapshot = NodeSnapshot.load(capture)
    cluster = ClusterState.from_json_text((capture / "api.json").read_text())
    report = analyse(snapshot, cluster)
    assert build_status(NodeSnapshot.load(capture))["mode"] == report.mode
    assert current_mode(snapshot, None, report.state)[0] == report.mode
    _, status_out = _run(capsys, "status", "--from", str(capture), "-o", "json")
    _, check_out = _run(capsys, "check", "--from", str(capture), "-o", "json")
    assert json.loads(status_out)["mode"] == json.loads(check_out)["mode"] == report.mode


@pytest.mark.parametrize("command", ["check", "status", "trace", "svc"])
def test_one_state_and_one_mode_decision_per_run(command, monkeypatch, capsys):
    import kubectl_proxydoctor.node_state as node_state
    import kubectl_proxydoctor.proxy_mode as proxy_mode

    calls: Counter[str] = Counter()
    real_build, real_decide = node_state._build, proxy_mode.decide

    def build(*args, **kwargs):
        calls["build"] += 1
        return real_build(*args, **kwargs)

    def decide(*args, **kwargs):
        calls["decide"] += 1
        return real_decide(*args, **kwargs)

    monkeypatch.setattr(node_state, "_build", build)
    monkeypatch.setattr(proxy_mode, "decide", decide)
    capture = str(FIXTURES / "iptables" / "stale-endpoint")
    argv = {"trace": ["trace", "--dst", "10.96.0.11:80"], "svc": ["svc", "web", "-n", "default"]}.get(
        command, [command])
    code, _ = _run(capsys, *argv, "--from", capture, "-o", "json")
    assert code in (0, 1)
    assert calls == {"build": 1, "decide": 1}


def test_the_report_carries_the_state_it_was_made_from():
    capture = FIXTURES / "iptables" / "stale-endpoint"
    cluster = ClusterState.from_json_text((capture / "api.json").read_text())
    report = analyse(NodeSnapshot.load(capture), cluster)
    state = report.state
    assert state.mode == report.mode == "iptables" and state.rules["iptables"].outcome is Outcome.OK
    assert report.expected is state.expected is not None and report.views is state.views
    assert [v.source for v in state.primary] == ["iptables-nft", "ip6tables-nft"] and 4 in state.families


def test_nftables_load_balancer_frontends_are_labelled_the_same_from_a_live_api():
    """The interpreter no longer reads api.json itself: a live API labels them as a capture does."""
    capture = FIXTURES / "nftables" / "healthy"
    cluster = ClusterState.from_json_text((capture / "api.json").read_text())
    assert cluster.load_balancer_ips()
    with_file = NodeSnapshot.load(capture)
    live_like = NodeSnapshot.from_files({k: v for k, v in with_file.files.items() if k != "api.json"},
                                        origin="live")

    def kinds(snapshot):
        state = build_node_state(snapshot, cluster)
        return {(str(n), f.address, f.kind) for v in state.views for (n, _), p in v.ports.items()
                for f in p.frontends}

    assert kinds(live_like) == kinds(with_file)
    assert any(kind == "load-balancer" for _, _, kind in kinds(live_like))


def test_an_interpreter_bug_is_unknown_in_check_and_status_not_a_traceback(monkeypatch, capsys):
    import kubectl_proxydoctor.modes.iptables as iptables_mode

    def broken(snapshot):
        raise RuntimeError("boom")

    monkeypatch.setattr(iptables_mode, "interpret", broken)
    capture = str(FIXTURES / "iptables" / "healthy")
    code, out = _run(capsys, "check", "--from", capture, "-o", "json")
    doc = json.loads(out)
    assert code == 3
    assert doc["sources"]["iptables"] == "unreadable: the iptables interpreter failed (RuntimeError: boom)"
    assert [f["code"] for f in doc["findings"]][0] == "rules-unknown"
    code, out = _run(capsys, "status", "--from", capture, "-o", "json")
    doc = json.loads(out)
    assert code == 3
    assert any("the iptables interpreter failed (RuntimeError: boom)" in line
               for line in doc["rules_unknown"])
    assert any(n.startswith("iptables rules could not be read") for n in doc["notes"])
    assert doc["rules"]["iptables"]  # still counted from the files


# -- one exit mapping ---------------------------------------------------------------------------

OK, PROBLEM, USAGE, UNKNOWN = ExitStatus.OK, ExitStatus.PROBLEM, ExitStatus.USAGE, ExitStatus.UNKNOWN


@pytest.mark.parametrize(("found", "node", "fleet"), [
    ([], OK, OK),
    ([OK], OK, OK),
    ([PROBLEM], PROBLEM, PROBLEM),
    ([UNKNOWN], UNKNOWN, UNKNOWN),
    ([PROBLEM, UNKNOWN], UNKNOWN, PROBLEM),
    ([OK, UNKNOWN, PROBLEM, OK], UNKNOWN, PROBLEM),
])
def test_one_precedence_function(found, node, fleet):
    assert combine(found, Scope.NODE) is node
    assert combine(found, Scope.FLEET) is fleet


def test_usage_is_not_combined_and_codes_are_the_documented_ones():
    assert [int(s) for s in ExitStatus] == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        combine([USAGE, PROBLEM])
    assert NPD_CODES == {OK: 0, PROBLEM: 1, UNKNOWN: 2}


@pytest.mark.parametrize(("errors", "unreadable", "expected"), [
    (False, False, OK), (True, False, PROBLEM), (False, True, UNKNOWN), (True, True, UNKNOWN)])
def test_node_report_scan_and_npd_use_the_mapping(errors, unreadable, expected):
    from kubectl_proxydoctor.serve.npd import npd_answer

    report = NodeReport(node="n1", mode="iptables",
                        findings=[Finding("stale-endpoint", "error", "x")] if errors else [],
                        unreadable=["api"] if unreadable else [])
    assert report.exit_code is expected is status_of(problem=errors, unknown=unreadable)
    assert npd_answer(report)[0] == NPD_CODES[expected]
    scan = ScanResult([NodeSummary("n1", errors=int(errors)),
                       NodeSummary("n2", failure="x" if unreadable else None)])
    assert scan.exit_code is status_of(problem=errors, unknown=unreadable, scope=Scope.FLEET)


# -- "could not read" is a typed state ---------------------------------------------------------


def test_collectors_record_a_typed_state_that_survives_a_capture(tmp_path):
    from kubectl_proxydoctor.collect import CollectContext
    from kubectl_proxydoctor.sources import Readability, Why, source_state

    ctx = CollectContext()
    ctx.unavailable("iptables-legacy-save.txt", "iptables-legacy-save: exit status 4", Why.NEEDS_ROOT)
    ctx.unavailable("ipvsadm.txt", "kernel has no IP_VS (CONFIG_IP_VS not set)")  # classified once, here
    ctx.unavailable("conntrack.txt", "conntrack timed out")
    ctx.ok("conntrack.txt", "conntrack.txt", "")  # read after all: no stale state stays behind
    assert ctx.states == {"iptables-legacy-save.txt": "unreadable/needs root", "ipvsadm.txt": "absent"}
    saved = NodeSnapshot(files=dict(ctx.files), sources=dict(ctx.sources), states=dict(ctx.states)).save(
        tmp_path / "capture")
    loaded = NodeSnapshot.load(saved)
    assert loaded.states == ctx.states
    # the recorded state is what counts, not the words: this text alone would read as a plain failure
    legacy = source_state(loaded, "iptables-legacy-save.txt")
    assert (legacy.state, legacy.why) == (Readability.UNREADABLE, Why.NEEDS_ROOT)
    assert source_state(loaded, "ipvsadm.txt").state is Readability.ABSENT


def test_a_capture_without_typed_states_is_classified_from_its_text():
    from kubectl_proxydoctor.sources import Readability, Why, source_state

    old = NodeSnapshot.from_files({"meta.json": json.dumps({"node": "n1", "sources": {
        "iptables-legacy-save.txt": "unavailable: iptables-legacy-save: Permission denied"}})})
    assert old.states == {}
    state = source_state(old, "iptables-legacy-save.txt")
    assert (state.state, state.why) == (Readability.UNREADABLE, Why.NEEDS_ROOT)


def test_a_tracer_bug_is_one_line_and_unknown_in_trace(monkeypatch, capsys):
    import kubectl_proxydoctor.modes.nftables as nftables_mode

    def broken(snapshot, packet):
        raise RuntimeError("tracer boom")

    monkeypatch.setattr(nftables_mode, "trace", broken)
    capture = str(FIXTURES / "iptables" / "stale-endpoint")
    with pytest.raises(SystemExit) as exc:
        main(["trace", "--dst", "10.96.0.10:53/udp", "--from", capture, "-o", "json"])
    out, err = capsys.readouterr()
    assert exc.value.code == 3
    assert err.strip() == "kubectl-proxydoctor: nftables tracer failed (RuntimeError: tracer boom)"
    assert "Traceback" not in err and json.loads(out)  # the other modes' traces are still shown
