"""`kubectl proxydoctor trace` end to end through the real CLI entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kubectl_proxydoctor.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "iptables"


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def test_json_outcomes_with_probabilities(capsys) -> None:
    code, out, _ = run(capsys, "trace", "--dst", "10.96.100.10:80", "--src", "172.30.0.2",
                       "--from", str(FIXTURES / "healthy"), "-o", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["packet"] == {"dst": "10.96.100.10", "port": 80, "protocol": "TCP", "src": "172.30.0.2"}
    ipt = [r for r in doc["results"] if r["mode"] == "iptables"]
    assert [r["source"] for r in ipt] == ["iptables-nft"]
    outcomes = ipt[0]["outcomes"]
    assert sorted(o["destination"] for o in outcomes) == ["10.244.0.11:8080", "10.244.0.12:8080",
                                                          "10.244.0.13:8080"]
    assert abs(sum(o["probability"] for o in outcomes) - 1) < 1e-6
    assert all(o["verdict"] == "dnat" and o["masquerade"] for o in outcomes)
    assert outcomes[0]["service"] == {"service": "default/web", "port": "http", "protocol": "TCP"}
    assert outcomes[0]["path"][0]["chain"] == "nat/PREROUTING"


def test_udp_reject_and_table(capsys) -> None:
    code, out, _ = run(capsys, "trace", "--dst", "10.96.100.14:80/tcp", "--from", str(FIXTURES / "healthy"))
    assert code == 0
    assert "REJECT" in out and "default/no-endpoints:http" in out and "KUBE-SERVICES" in out
    code, out, _ = run(capsys, "trace", "--dst", "10.96.100.16:53/udp", "--src", "172.30.0.1",
                       "--from", str(FIXTURES / "healthy"), "-o", "json")
    doc = json.loads(out)
    dests = {o["destination"] for r in doc["results"] for o in r["outcomes"]}
    assert dests == {"10.244.0.11:5353", "10.244.0.13:5353"}
    assert doc["results"][0]["outcomes"][0]["path"][0]["chain"] == "nat/OUTPUT"  # from the node itself


def test_sample_and_legacy_backend_both_traced(capsys) -> None:
    code, out, _ = run(capsys, "trace", "--dst", "10.96.100.10:80", "--src", "172.30.0.2",
                       "--from", str(FIXTURES / "legacy-leftovers"), "-o", "json")
    sources = [r["source"] for r in json.loads(out)["results"] if r["mode"] == "iptables"]
    assert sources == ["iptables-nft", "iptables-legacy"]
    code, out, _ = run(capsys, "trace", "--dst", "10.96.100.10:80", "--sample")
    assert code == 0 and "DNAT -> 10.244.0.1" in out


@pytest.mark.parametrize("dst", ["10.96.100.10", "10.96.100.10:0", "10.96.100.10:80/icmp", "nohost:80",
                                 "10.96.100.10:99999", "[::1:80"])
def test_bad_destination_is_a_usage_error(capsys, dst: str) -> None:
    code, _, err = run(capsys, "trace", "--dst", dst, "--sample")
    assert code == 2
    assert err.startswith("kubectl-proxydoctor: --dst") and "Traceback" not in err


def test_bad_source_and_mixed_families(capsys) -> None:
    code, _, err = run(capsys, "trace", "--dst", "10.96.100.10:80", "--src", "bad", "--sample")
    assert code == 2 and "--src" in err
    code, _, err = run(capsys, "trace", "--dst", "10.96.100.10:80", "--src", "fd00::1", "--sample")
    assert code == 2 and "family" in err


def test_ipv6_destination(capsys) -> None:
    code, out, _ = run(capsys, "trace", "--dst", "[fd00::10]:80/tcp", "--from", str(FIXTURES / "healthy"),
                       "-o", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["packet"]["dst"] == "fd00::10"
    ipt6 = [r for r in doc["results"] if r["source"] == "ip6tables-nft"]
    assert ipt6 and [o["verdict"] for o in ipt6[0]["outcomes"]] == ["no-match"]


def test_corrupt_capture_is_one_line_error(capsys, tmp_path: Path) -> None:
    (tmp_path / "iptables-nft-save.txt").write_text("*nat\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -j\n")
    code, _, err = run(capsys, "trace", "--dst", "10.96.100.10:80", "--from", str(tmp_path))
    assert code == 3
    assert "iptables-nft-save.txt:3" in err and "Traceback" not in err


def test_help_is_fast_and_lists_options() -> None:
    proc = subprocess.run([sys.executable, "-m", "kubectl_proxydoctor", "trace", "--help"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    for opt in ("--dst", "--src", "--from", "--sample", "--output"):
        assert opt in proc.stdout
    cmd = [sys.executable, "-X", "importtime", "-m", "kubectl_proxydoctor", "trace", "--help"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    heavy = [m for m in ("kubernetes", "textual", "pyroute2", "nftables") if f"| {m}\n" in proc.stderr]
    assert heavy == []


def test_another_modes_unreadable_rules_do_not_make_a_complete_trace_unknown(capsys, tmp_path) -> None:
    """An iptables node without the nft binary: check exits 0, and so does trace (not 3); with the
    iptables rules themselves unreadable, trace exits 3."""
    import shutil

    capture = tmp_path / "node"
    shutil.copytree(FIXTURES / "healthy", capture)
    (capture / "nft-ruleset.json").unlink()
    (capture / "nft-ruleset.txt").unlink()
    meta = json.loads((capture / "meta.json").read_text())
    meta.setdefault("sources", {})["nft-ruleset.json"] = "unavailable: nft not found"
    (capture / "meta.json").write_text(json.dumps(meta))
    packet = ("--dst", "10.96.100.10:80", "--src", "172.30.0.2")
    code, out, _ = run(capsys, "trace", "--from", str(capture), *packet)
    assert code == 0 and "fate: DNAT to 3 endpoints" in out
    assert run(capsys, "check", "--from", str(capture))[0] == 0
    for name in ("iptables-save.txt", "iptables-nft-save.txt", "iptables-legacy-save.txt"):
        (capture / name).unlink()
        meta["sources"][name] = "unavailable: needs root (CAP_NET_ADMIN): Permission denied"
    (capture / "meta.json").write_text(json.dumps(meta))
    code, out, _ = run(capsys, "trace", "--from", str(capture), *packet)
    assert code == 3 and "could not be read" in out


def test_a_trace_through_leftovers_only_is_unknown_when_the_running_modes_rules_were_not_read(
        capsys, tmp_path) -> None:
    """kube-proxy says iptables, its dumps were not captured, an nftables table is left over: the
    leftover's trace does not stand for the running mode's rules (exit 3, as check)."""
    import shutil

    capture = tmp_path / "node"
    shutil.copytree(Path(__file__).parent / "fixtures" / "nftables" / "healthy", capture)
    (capture / "kube-proxy-mode.txt").write_text("iptables")
    for dump in capture.glob("ip*tables*-save.txt"):
        dump.unlink()
    code, out, _ = run(capsys, "trace", "--from", str(capture), "--dst", "10.96.100.16:53/udp")
    assert code == 3 and "iptables rules were not captured" in out
    assert run(capsys, "check", "--from", str(capture))[0] == 3
