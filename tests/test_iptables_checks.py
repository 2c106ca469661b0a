"""Structural iptables checks on the real captures and on doctored copies of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubectl_proxydoctor.checks import CheckContext, load_checks, run_checks
from kubectl_proxydoctor.snapshot import NodeSnapshot

FIXTURES = Path(__file__).parent / "fixtures"
MINE = ["iptables-backend-leftover", "iptables-foreign-rule", "iptables-chain-structure",
        "iptables-probabilities", "iptables-stale-layout"]


def findings(snapshot: NodeSnapshot, mode: str | None = None):
    load_checks()
    return run_checks(CheckContext(snapshot=snapshot, mode=mode or None), only=MINE)


def doctored(capture: str, edit) -> NodeSnapshot:
    snap = NodeSnapshot.load(FIXTURES / "iptables" / capture)
    files = dict(snap.files)
    files["iptables-nft-save.txt"] = edit(files["iptables-nft-save.txt"])
    files.pop("iptables-save.txt", None)
    return NodeSnapshot.from_files(files)


@pytest.mark.parametrize("capture", ["iptables/healthy", "iptables/after-switch-from-nftables",
                                     "iptables/stale-endpoint", "iptables/sync-failing", "ipvs/healthy",
                                     "nftables/healthy", "nftables/after-switch-from-iptables"])
def test_clean_captures_have_no_structural_findings(capture: str) -> None:
    assert findings(NodeSnapshot.load(FIXTURES / capture)) == []


def test_expected_drift_details_are_reported() -> None:
    for capture, code in (("legacy-leftovers", "backend-leftover"), ("third-party-rules", "foreign-rule")):
        snap = NodeSnapshot.load(FIXTURES / "iptables" / capture)
        got = findings(snap)
        drift = json.loads((FIXTURES / "iptables" / capture / "expected.json").read_text())["drift"]
        assert {f.code for f in got} == {code}
        for entry in drift:
            match = [f for f in got
                     if (f.service or "") == entry["service"] and (f.port or "") == entry["port"]]
            assert match, entry
            assert any(entry["detail"].split(" (stale copy")[0] in f.message for f in match), entry


def test_backend_leftover_names_the_stale_copy_and_its_counters() -> None:
    (f,) = findings(NodeSnapshot.load(FIXTURES / "iptables" / "legacy-leftovers"))
    assert (f.code, f.severity, f.service, f.port, f.protocol) == (
        "backend-leftover", "error", "default/web", "http", "TCP")
    assert "10.244.0.99:8080" in f.message and "nf_tables" in f.message
    assert "PREROUTING [10:600]" in f.message
    assert any("KUBE-SEP-K52RHIKA7XX63F7V" in line for line in f.evidence)
    assert "iptables-legacy" in f.fix


def test_foreign_rules_shadowing_and_cni_chain() -> None:
    got = findings(NodeSnapshot.load(FIXTURES / "iptables" / "third-party-rules"))
    web = next(f for f in got if f.service == "default/web")
    assert web.severity == "error" and "ACCEPTed without DNAT" in web.message
    assert web.evidence == ["-A KUBE-SERVICES -d 10.96.100.10/32 -p tcp -m tcp --dport 80 -m comment "
                            "--comment added-by-hand -j ACCEPT"]
    cni = next(f for f in got if f.service is None)
    assert cni.severity == "warning" and "CNI-DN-92edd5a420873c4595c0d" in cni.message
    assert len(cni.evidence) == 3


def test_flushed_chain_leaves_unreferenced_endpoint_chains() -> None:
    got = findings(NodeSnapshot.load(FIXTURES / "iptables" / "chain-flushed"))
    assert {f.code for f in got} == {"unreferenced-chain"}
    assert len(got) == 3 and all(f.service == "default/web" and f.severity == "info" for f in got)


def test_uneven_probabilities() -> None:
    snap = doctored("healthy", lambda t: t.replace(
        '"default/web:http -> 10.244.0.11:8080" -m statistic --mode random --probability 0.33333333349',
        '"default/web:http -> 10.244.0.11:8080" -m statistic --mode random --probability 0.50000000000'))
    (f,) = findings(snap)
    assert (f.code, f.severity, f.service) == ("uneven-probabilities", "warning", "default/web")
    assert "50.0%, 25.0%, 25.0%" in f.message


def test_a_probability_that_is_not_a_number_is_uneven() -> None:
    snap = doctored("healthy", lambda t: t.replace(
        '"default/web:http -> 10.244.0.11:8080" -m statistic --mode random --probability 0.33333333349',
        '"default/web:http -> 10.244.0.11:8080" -m statistic --mode random --probability nan'))
    got = [f for f in findings(snap) if f.code == "uneven-probabilities"]
    assert len(got) == 1 and got[0].service == "default/web" and "p=nan" in got[0].message


def test_probabilities_that_let_connections_fall_through() -> None:
    last = ('-A KUBE-SVC-CDGGSHYLG3RE2FKL -m comment --comment "default/web:http -> 10.244.0.13:8080" '
            "-j KUBE-SEP-R6TGM7Q5Z6CPQGKZ")
    snap = doctored("healthy", lambda t: t.replace(
        last, last.replace("-j KUBE-SEP", "-m statistic --mode random --probability 0.5 -j KUBE-SEP")))
    got = [f for f in findings(snap) if f.code == "uneven-probabilities"]
    assert len(got) == 1 and got[0].severity == "error" and "fall through" in got[0].message


def test_missing_chain_and_old_version_chains() -> None:
    def edit(text: str) -> str:
        text = text.replace(":KUBE-MARK-MASQ - [0:0]\n",
                            ":KUBE-MARK-MASQ - [0:0]\n:KUBE-XLB-AAAAAAAAAAAAAAAA - [0:0]\n"
                            ":KUBE-MARK-DROP - [0:0]\n")
        return text.replace("-A KUBE-SVL-V7ZMVOA2AOW6ATRL -m comment",
                            "-A KUBE-SVL-V7ZMVOA2AOW6ATRL -j KUBE-SEP-GONEGONEGONEGONE\n"
                            "-A KUBE-SVL-V7ZMVOA2AOW6ATRL -m comment", 1)
    got = findings(doctored("healthy", edit))
    codes = sorted(f.code for f in got)
    assert "missing-chain" in codes and "version-leftover" in codes
    missing = next(f for f in got if f.code == "missing-chain")
    assert "KUBE-SEP-GONEGONEGONEGONE" in missing.message and missing.severity == "error"
    old = next(f for f in got if f.code == "version-leftover")
    assert "KUBE-XLB-AAAAAAAAAAAAAAAA" in old.message and "KUBE-MARK-DROP" in old.message


def test_foreign_filter_rule_ahead_of_reject() -> None:
    rule = "-A KUBE-SERVICES -d 10.96.100.14/32 -p tcp -m tcp --dport 80 -j ACCEPT"
    snap = doctored("healthy", lambda t: t.replace(
        '-A KUBE-SERVICES -d 10.96.100.19/32', rule + '\n-A KUBE-SERVICES -d 10.96.100.19/32', 1))
    (f,) = findings(snap)
    assert (f.code, f.severity, f.service) == ("foreign-rule", "error", "default/no-endpoints")
    assert "filter KUBE-SERVICES rule 1" in f.message


def test_other_mode_skips_foreign_and_structure_checks() -> None:
    snap = NodeSnapshot.load(FIXTURES / "iptables" / "third-party-rules")
    assert findings(snap, mode="nftables") == []


def test_ipvs_helper_chains_are_not_checked_as_iptables_mode_when_the_mode_is_unknown() -> None:
    """No mode reported: a dump of IPVS mode's helper chains (no KUBE-SVC-*) is not judged by
    iptables mode's structure (its chains are not stale iptables-mode leftovers)."""
    snap = NodeSnapshot.load(FIXTURES / "ipvs" / "healthy")
    files = {k: v for k, v in snap.files.items() if k != "kube-proxy-mode.txt"}
    files["meta.json"] = json.dumps({k: v for k, v in snap.meta.items() if k != "mode"})
    unknown = NodeSnapshot.from_files(files)
    assert unknown.meta.get("mode") is None and "KUBE-LOAD-BALANCER" in files["iptables-nft-save.txt"]
    assert findings(unknown) == []
    # an IPVS chain beside iptables mode's own chains is reported as a leftover
    mixed = dict(files)
    healthy = NodeSnapshot.load(FIXTURES / "iptables" / "healthy").files["iptables-nft-save.txt"]
    mixed["iptables-nft-save.txt"] = healthy.replace(
        ":KUBE-SERVICES - [0:0]", ":KUBE-SERVICES - [0:0]\n:KUBE-LOAD-BALANCER - [0:0]", 1)
    mixed.pop("iptables-save.txt", None)
    assert {f.code for f in findings(NodeSnapshot.from_files(mixed))} == {"mode-leftover"}
