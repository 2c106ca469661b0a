"""iptables layout knowledge (modes/iptables/layout.py): the generation each capture shows, and
rules of kube-proxy's chains in no known layout reported as "unknown layout", never as drift."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kubectl_proxydoctor.analysis import analyse
from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.kube_proxy_version import identify
from kubectl_proxydoctor.modes.iptables import layout
from kubectl_proxydoctor.modes.iptables.parse import parse
from kubectl_proxydoctor.snapshot import NodeSnapshot

FIXTURES = Path(__file__).parent / "fixtures"
UPSTREAM = FIXTURES / "upstream" / "iptables"
SHARED = Path("/work/shared/fixtures")
DUMPS = sorted({*FIXTURES.rglob("*tables*save*.txt"), *SHARED.rglob("*tables*save*.txt")})


@pytest.mark.parametrize("dump", DUMPS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_capture_has_a_rule_in_an_unknown_layout(dump: Path) -> None:
    """Every real capture (v1.30.3, every mode's leftovers) and kube-proxy's own expectations."""
    assert layout.unknown_rules(parse(dump.read_text(), source=str(dump))) == []


def test_each_upstream_generation_is_named_from_its_rules() -> None:
    old = layout.generation([parse((UPSTREAM / "k8s-pre-1.31" / "iptables-save.txt").read_text())])
    new = layout.generation([parse((UPSTREAM / "k8s-1.33plus" / "iptables-save.txt").read_text())])
    assert old is not None and new is not None
    assert old.min_version is None and "without nfacct" in old.name
    assert old.invalid_drop_uncounted == "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP"
    assert new.min_version == (1, 31) and new.invalid_drop_uncounted is None
    assert any("ct_state_invalid_dropped_pkts" in e for e in new.evidence)
    assert any("localhost_nps_accepted_pkts" in e for e in new.evidence)


def _variant(tmp_path: Path, fixture: str, *edits: tuple[str, str]) -> Path:
    capture = tmp_path / fixture
    shutil.copytree(UPSTREAM / fixture, capture)
    text = (capture / "iptables-save.txt").read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    (capture / "iptables-save.txt").write_text(text)
    return capture


def _report(capture: Path, api: dict | None = None):
    cluster = ClusterState.from_list(api or json.loads((capture / "api.json").read_text()))
    return analyse(NodeSnapshot.load(capture), cluster)


SVC1_JUMP = '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j '
SVC4_SPLIT = "-m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-UKSFD7AGPMPPLUHC"
UNKNOWN = {
    # a match kube-proxy never writes in a service chain (read as a condition: no endpoint at all)
    "mark-match": ("ns1/svc1", (SVC1_JUMP, SVC1_JUMP.replace(" -j ", " -m mark --mark 0x1/0x1 -j "))),
    # a chain kind of no known generation (frontend jump and its chain renamed)
    "new-chain-kind": ("ns1/svc1", ("KUBE-SVC-XPGD46QRK7WJZT7O", "KUBE-SVX-XPGD46QRK7WJZT7O")),
    # another statistic mode (read as "always": one endpoint would look stale)
    "statistic-nth": ("ns4/svc4", (SVC4_SPLIT, SVC4_SPLIT.replace(
        "--mode random --probability 0.50000000000", "--mode nth --every 2 --packet 0"))),
    # a DNAT range (read as one endpoint named by the range)
    "dnat-range": ("ns1/svc1", ("--to-destination 10.180.0.1:80",
                                "--to-destination 10.180.0.1-10.180.0.2:80")),
}


@pytest.mark.parametrize("fixture", ["k8s-pre-1.31", "k8s-1.33plus"])
@pytest.mark.parametrize("case", sorted(UNKNOWN))
def test_unknown_layout_is_a_warning_with_the_rule_not_drift(tmp_path: Path, case: str, fixture: str) -> None:
    service, edit = UNKNOWN[case]
    report = _report(_variant(tmp_path, fixture, edit))
    warnings = [f for f in report.findings if f.code == "unknown-layout"]
    assert warnings, [(f.code, f.message) for f in report.findings]
    assert {f.service for f in warnings} == {service}
    assert all(f.severity == "warning" and f.message.startswith("unknown layout: ") for f in warnings)
    assert all(edit[1] in f.evidence[0] for f in warnings)
    assert [f"{f.code} {f.service}" for f in report.findings if f.severity == "error"] == []
    foreign = [f for f in report.findings if f.code == "foreign-rule"]
    assert not [f for f in foreign if f.evidence[0] == warnings[0].evidence[0]]


def test_real_drift_is_still_found_next_to_an_unknown_layout(tmp_path: Path) -> None:
    capture = _variant(tmp_path, "k8s-1.33plus", UNKNOWN["mark-match"][1])
    api = json.loads((capture / "api.json").read_text())
    for item in api["items"]:
        if item["kind"] == "EndpointSlice" and item["metadata"]["name"] == "svc4-1":
            item["endpoints"] = [e for e in item["endpoints"] if e["addresses"] != ["10.180.0.4"]]
    report = _report(capture, api)
    errors = {f"{f.service}:{f.port}" for f in report.findings if f.severity == "error"}
    assert errors == {"ns4/svc4:p80"}
    assert {f.service for f in report.findings if f.code == "unknown-layout"} == {"ns1/svc1"}


def test_uncounted_invalid_drop_of_a_1_31_kube_proxy_is_said(tmp_path: Path) -> None:
    """kube-proxy >= 1.31 counts INVALID drops with nfacct: its rule without the counter means the
    kernel had no nfnetlink_acct; said in status -o json, and no version disagreement."""
    capture = tmp_path / "cap"
    shutil.copytree(UPSTREAM / "k8s-pre-1.31", capture)
    (capture / "kube-proxy-metrics.txt").write_text('kubernetes_build_info{git_version="v1.33.2"} 1\n')
    ident = identify(NodeSnapshot.load(capture))
    assert ident.version == "v1.33.2"
    [note] = [n for n in ident.notes if "nfacct" in n]
    assert "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP" in note
    assert not any("disagrees" in n for n in ident.notes)
    done = subprocess.run([sys.executable, "-m", "kubectl_proxydoctor", "status", "--from", str(capture),
                           "-o", "json"], capture_output=True, text=True, check=False)
    data = json.loads(done.stdout)["kube_proxy"]
    assert data["version"] == "v1.33.2" and "without nfacct" in data["layout"]["generation"]
    assert any("nfnetlink_acct" in n for n in data["version_notes"])


@pytest.mark.parametrize("case", sorted(UNKNOWN))
def test_a_port_not_understood_is_unknown_not_drift_nor_ok(tmp_path: Path, case: str) -> None:
    from kubectl_proxydoctor.serve.verdict import summarise

    service, edit = UNKNOWN[case]
    report = _report(_variant(tmp_path, "k8s-1.33plus", edit))
    statuses = {f"{s.name.service}:{s.name.port}": s.status for s in report.services}
    mine = {k: v for k, v in statuses.items() if k.startswith(service + ":")}
    assert mine and set(mine.values()) == {"unknown"}, statuses
    assert {v for k, v in statuses.items() if k not in mine} <= {"ok"}, statuses
    verdict = summarise(report)  # serve's drift metrics do not count a port that was not compared
    assert not [d for d in verdict.drifts if d.service == service]


def test_a_layout_not_understood_exits_3_not_0(tmp_path: Path) -> None:
    """Unknown is not empty: rules not understood are not 'healthy' (exit 3, README "Exit codes")."""
    report = _report(_variant(tmp_path, "k8s-1.33plus", UNKNOWN["dnat-range"][1]))
    assert int(report.exit_code) == 3
    healthy = _report(_variant(tmp_path / "healthy", "k8s-1.33plus"))
    assert int(healthy.exit_code) == 0


SEP1_DNAT = '-m comment --comment "ns1/svc1:p80" -m tcp -j DNAT --to-destination 10.180.0.1:80'
MORE_UNKNOWN = {
    # a goto where kube-proxy jumps (the endpoint chain's verdict would end the service chain)
    "goto": (SVC1_JUMP + "KUBE-SEP-SXIVWICOYRO3J4NJ", SVC1_JUMP.replace(" -j ", " -g ")
             + "KUBE-SEP-SXIVWICOYRO3J4NJ"),
    # DNAT target options kube-proxy never writes
    "dnat-option": (SEP1_DNAT, SEP1_DNAT + " --random"),
    # an output interface on the endpoint jump (read as unconditional)
    "out-interface": (SVC1_JUMP, SVC1_JUMP.replace(" -j ", " -o eth0 -j ")),
    # a source port on the DNAT (read as every packet)
    "source-port": (SEP1_DNAT, SEP1_DNAT.replace("-m tcp -j", "-m tcp --sport 1000 -j")),
}


@pytest.mark.parametrize("fixture", ["k8s-pre-1.31", "k8s-1.33plus"])
@pytest.mark.parametrize("case", sorted(MORE_UNKNOWN))
def test_a_goto_target_options_or_extra_conditions_are_unknown_layout(
        tmp_path: Path, case: str, fixture: str) -> None:
    """The rules layout.py names as not understood are found by unknown_rules' quick test too."""
    edit = MORE_UNKNOWN[case]
    report = _report(_variant(tmp_path, fixture, edit))
    warnings = [f for f in report.findings if f.code == "unknown-layout"]
    assert {f.service for f in warnings} == {"ns1/svc1"}, [(f.code, f.message) for f in report.findings]
    assert any(edit[1] in e for f in warnings for e in f.evidence)
    assert [f"{f.code} {f.service}" for f in report.findings if f.severity == "error"] == []
