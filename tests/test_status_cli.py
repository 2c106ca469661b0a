"""`status` on the real captures: modes, leftovers, backends, kernel readiness, kube-proxy health."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kubectl_proxydoctor.cli.status import build_status, is_read_failure
from kubectl_proxydoctor.render.status_text import status_lines
from kubectl_proxydoctor.snapshot import NodeSnapshot
from tests.conftest import FIXTURES

ROOT = Path(__file__).parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubectl_proxydoctor", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)


def _status(fixture: str) -> dict:
    return build_status(NodeSnapshot.load(FIXTURES / fixture))


ALL = sorted(str(p.relative_to(FIXTURES)) for p in FIXTURES.glob("*/*") if (p / "meta.json").exists())


@pytest.mark.parametrize("fixture", ALL)
def test_mode_matches_the_capture(fixture):
    meta = json.loads((FIXTURES / fixture / "meta.json").read_text())
    data = _status(fixture)
    assert data["mode"] == meta["mode"]
    assert data["node"] == "pdnode1"
    assert meta["mode"] in data["modes_found"]
    assert not any(line[2] == "" and "Traceback" in line[1] for line in status_lines(data))


def test_iptables_counts_follow_the_rules():
    data = _status("iptables/healthy")
    [v4] = [v for v in data["rules"]["iptables"] if v["source"] == "iptables-nft"]
    # one KUBE-SEP chain per (service port, endpoint) in the capture; 16 service ports in the base scenario
    text = (FIXTURES / "iptables/healthy/iptables-nft-save.txt").read_text()
    assert v4["endpoints"] == sum(line.startswith(":KUBE-SEP-") for line in text.splitlines()) == 26
    assert v4["service_ports"] == len(json.loads((FIXTURES / "iptables/healthy/expected.json").read_text())
                                      ["statuses"]) == 16
    assert data["leftover_modes"] == []


def test_counts_from_the_files_when_no_interpreter_is_there():
    from kubectl_proxydoctor.cli.status import _fallback_counts

    snap = NodeSnapshot.load(FIXTURES / "iptables" / "healthy")
    [v4, _] = _fallback_counts(snap)["iptables"]
    assert (v4["source"], v4["endpoints"], v4["service_ports"]) == ("iptables-nft", 26, 15)  # KUBE-SVC/SVL
    [nft, _] = _fallback_counts(NodeSnapshot.load(FIXTURES / "nftables" / "healthy"))["nftables"]
    assert nft["endpoints"] == 26
    [ipvs] = _fallback_counts(NodeSnapshot.load(FIXTURES / "ipvs" / "healthy"))["ipvs"]
    assert ipvs["virtual_servers"] > 0 and ipvs["real_servers"] > 0


def test_leftovers_of_the_other_mode_are_named():
    data = _status("nftables/after-switch-from-iptables")
    assert data["mode"] == "nftables"
    assert data["leftover_modes"] == ["iptables"]
    lines = [text for _, text, _ in status_lines(data)]
    assert any("iptables-nft" in t and "leftover" in t for t in lines)


def test_legacy_backend_with_kube_proxy_chains_is_shown():
    data = _status("iptables/legacy-leftovers")
    assert data["iptables_backends"]["iptables-legacy"]["kube_proxy_tables"] == ["nat"]
    assert set(data["iptables_backends"]["iptables-nft"]["kube_proxy_tables"]) == {"nat", "filter", "mangle"}
    assert any("kube-proxy chains in 2 backends" in text for _, text, _ in status_lines(data))
    assert _status("iptables/healthy")["iptables_backends"]["iptables-legacy"]["kube_proxy_tables"] == []


def test_sync_failing_health_and_figures():
    kp = _status("iptables/sync-failing")["kube_proxy"]
    assert kp["healthz"]["status"] == 503
    assert kp["sync"]["restore_failures"] == 3
    assert kp["sync"]["partial_restore_failures"] == 1
    assert round(kp["sync"]["pending_age_seconds"]) == 70
    assert _status("iptables/healthy")["kube_proxy"]["healthz"]["status"] == 200


def test_stopped_kube_proxy_and_ipvs_readiness():
    data = _status("iptables/stale-endpoint")
    assert data["kube_proxy"]["answered"] is False
    ipvs = _status("ipvs/healthy")
    assert ipvs["kernel"]["ipvs"]["state"] == "loaded"
    # the iptables captures were made on a kernel without IP_VS: the full config says so
    assert data["kernel"]["ipvs"]["state"] == "missing"
    assert data["kernel"]["nftables_ready"] is True


def test_kernel_without_evidence_is_unknown_not_missing():
    data = build_status(NodeSnapshot.from_files({"kernel.txt": "5.10.0\n"}))
    assert data["kernel"]["ipvs"]["state"] == "unknown"
    assert data["kernel"]["nftables_ready"] is False  # 5.10 < 5.13
    assert data["mode"] == "unknown" and data["rules"] == {}


def test_cli_table_and_json():
    res = _cli("status", "--from", str(FIXTURES / "iptables" / "sync-failing"))
    assert res.returncode == 0, res.stderr
    for text in ("Proxy mode:", "iptables", "/healthz 503", "restore failures 3 (partial 1)",
                 "a change queued 70 s before the capture"):
        assert text in res.stdout
    res = _cli("status", "--from", str(FIXTURES / "nftables" / "healthy"), "-o", "json")
    assert res.returncode == 0
    data = json.loads(res.stdout)
    assert data["mode"] == "nftables" and data["origin"].endswith("nftables/healthy")


def test_cli_sample_and_usage_errors():
    res = _cli("status", "--sample")
    assert res.returncode == 0, res.stderr
    assert "Node:" in res.stdout
    res = _cli("status", "--sample", "-o", "yaml")
    assert res.returncode == 2 and "unknown output format" in res.stderr
    res = _cli("status", "--sample", "--from", str(FIXTURES / "iptables" / "healthy"))
    assert res.returncode == 2


def test_a_capture_with_unreadable_sources_lists_them_and_exits_0():
    snap = NodeSnapshot.load(FIXTURES / "iptables" / "healthy")
    snap.sources["iptables-legacy-save.txt"] = "unavailable: needs root (CAP_NET_ADMIN): denied"
    data = build_status(snap)
    assert data["unavailable"] == {
        "iptables-legacy-save.txt": "unavailable: needs root (CAP_NET_ADMIN): denied"}
    assert any("needs root" in text for _, text, _ in status_lines(data))


@pytest.mark.parametrize("reason, failure", [
    ("ok", False), ("ok (HTTP 503: kube-proxy reports itself unhealthy)", False),
    ("unavailable: needs root (CAP_NET_ADMIN): nft: Operation not permitted", True),
    ("unavailable: iptables-nft-save not found", True),
    ("unavailable: conntrack timed out after 60 s", True),
    ("unavailable: 127.0.0.1:10249/metrics: nothing listens on 127.0.0.1:10249", False),
    ("unavailable: /proc/modules does not exist (no module support): built-in or unknown", False),
])
def test_which_unavailable_sources_are_read_failures(reason, failure):
    assert is_read_failure(reason) is failure


def test_ipvs_modes_own_iptables_chains_are_not_leftovers():
    data = _status("ipvs/healthy")
    assert data["mode"] == "ipvs" and data["leftover_modes"] == []
    assert [e["source"] for e in data["ipvs_iptables_chains"]] == ["iptables-nft"]
    # the same chains next to nftables mode are leftovers
    assert _status("nftables/after-switch-from-iptables")["ipvs_iptables_chains"] == []


@pytest.mark.integration
def test_collect_then_status_from_the_bundle(netns, tmp_path):
    from tests.conftest import ns_run

    ns = netns("pd-col-")
    rules = (FIXTURES / "iptables/healthy/iptables-nft-save.txt").read_text()
    ns_run(ns, "iptables-nft-restore", input=rules)
    bundle = tmp_path / "node.tar.gz"
    res = _cli("collect", "-o", str(bundle), "--node-name", "pdnode1", "--netns", ns)
    assert res.returncode in (0, 3), res.stderr
    assert "Traceback" not in res.stderr and bundle.exists()
    res = _cli("status", "--from", str(bundle), "-o", "json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["node"] == "pdnode1" and data["mode"] == "iptables"
    [v4] = [v for v in data["rules"]["iptables"] if v["source"] == "iptables-nft"]
    assert (v4["service_ports"], v4["endpoints"]) == (16, 26)
    res = _cli("collect", "-o", str(bundle), "--netns", ns)
    assert res.returncode == 2 and "already exists" in res.stderr


def test_malformed_files_become_notes_not_tracebacks(tmp_path):
    capture = tmp_path / "capture"
    capture.mkdir()
    for name in ("iptables-save.txt", "kernel.txt", "meta.json"):
        (capture / name).write_text((FIXTURES / "iptables/healthy" / name).read_text())
    (capture / "kube-proxy-metrics.txt").write_text("kubeproxy_ok 1\n{broken line\n")
    (capture / "nft-ruleset.json").write_text('{"nftables": [')
    res = _cli("status", "--from", str(capture), "-o", "json")
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    notes = json.loads(res.stdout)["notes"]
    assert any("kube-proxy-metrics.txt:2" in n for n in notes), notes
    assert any(n.startswith("nftables rules could not be") for n in notes), notes
