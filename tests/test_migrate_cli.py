"""`kubectl proxydoctor migrate-check`: exit codes, table and JSON output, captures and live API."""

from __future__ import annotations

import json

import pytest

from kubectl_proxydoctor.cli import main
from tests import api_fixtures
from tests.test_migrate_helpers import FIX, api_doc, set_kernels

api_server = api_fixtures.api_server
kube_api = api_fixtures.kube_api


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["migrate-check", *argv])
    out = capsys.readouterr()
    return int(exit_info.value.code or 0), out.out, out.err


def test_ready_node_table_has_verdict_and_plan(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_cli(capsys, "nftables", "--from", str(FIX / "iptables" / "healthy"))
    assert code == 0
    assert "verdict: READY" in out
    assert "nft delete table ip kube-proxy; nft delete table ip6 kube-proxy" in out
    assert "Third-party rules" in out


def test_not_ready_json(capsys):
    code, out, _ = run_cli(capsys, "nftables", "--from", str(FIX / "iptables" / "third-party-rules"),
                           "-o", "json")
    assert code == 1
    doc = json.loads(out)
    assert doc["verdict"] == "not ready" and doc["exit_code"] == 1 and doc["target"] == "nftables"
    failed = [c for c in doc["checks"] if c["status"] == "fail"]
    assert [c["check"] for c in failed] == ["third-party-rules"]
    assert any("added-by-hand" in e for e in failed[0]["evidence"])
    assert doc["plan"]["rollback"]


def test_several_captures(capsys):
    code, out, _ = run_cli(capsys, "nftables", "--from", str(FIX / "iptables" / "healthy"),
                           "--from", str(FIX / "nftables" / "healthy"), "-o", "json")
    doc = json.loads(out)
    assert code == 0 and doc["nodes"] == ["pdnode1", "pdnode1"]
    assert any(c["check"] == "current-mode" for c in doc["checks"])


def test_usage_errors(capsys):
    code, _, err = run_cli(capsys, "ipvs", "--from", str(FIX / "iptables" / "healthy"))
    assert code == 2 and "unknown target mode 'ipvs'" in err
    code, _, err = run_cli(capsys, "nftables", "--sample", "--from", str(FIX / "iptables" / "healthy"))
    assert code == 2
    code, _, err = run_cli(capsys, "nftables", "--from", str(FIX / "iptables" / "healthy"), "-o", "xml")
    assert code == 2 and "unknown output format" in err


def test_missing_capture_is_one_line_error(capsys, tmp_path):
    code, out, err = run_cli(capsys, "nftables", "--from", str(tmp_path / "nope"))
    assert code == 3 and err.startswith("kubectl-proxydoctor: ") and "Traceback" not in err + out


def test_live_api_cluster_view(capsys, kube_api):
    api = kube_api(set_kernels(api_doc(), pdnode1="6.8.0-45-generic", pdnode2="5.4.0-150-generic"))
    code, out, _ = run_cli(capsys, "nftables", "--kubeconfig", str(api.kubeconfig), "-o", "json")
    doc = json.loads(out)
    assert code == 1 and doc["verdict"] == "not ready"
    kernel = next(c for c in doc["checks"] if c["check"] == "kernel-version")
    assert kernel["scope"] == "cluster" and kernel["status"] == "fail"
    assert any("pdnode2: 5.4.0-150-generic" in e for e in kernel["evidence"])
    assert api.server.count("/api/v1/nodes") == 1


def test_live_api_ready_and_forbidden_nodes(capsys, kube_api):
    good = kube_api(set_kernels(api_doc(), pdnode1="6.8.0-45-generic"))
    code, out, _ = run_cli(capsys, "nftables", "--kubeconfig", str(good.kubeconfig), "-o", "json")
    assert code == 0 and json.loads(out)["verdict"] == "ready"
    blocked = kube_api(set_kernels(api_doc(), pdnode1="6.8.0-45-generic"))
    blocked.server.forbid("list", "nodes")
    code, out, _ = run_cli(capsys, "nftables", "--kubeconfig", str(blocked.kubeconfig), "-o", "json")
    doc = json.loads(out)
    assert code == 3 and doc["verdict"] == "could not tell"
    assert any("list nodes" in n and "forbidden" in n for n in doc["notes"])


def test_capture_nodes_with_live_api(capsys, kube_api):
    api = kube_api(set_kernels(api_doc("iptables/third-party-rules"), pdnode1="6.18.44"))
    code, out, _ = run_cli(capsys, "nftables", "--from", str(FIX / "iptables" / "third-party-rules"),
                           "--kubeconfig", str(api.kubeconfig), "-o", "json")
    doc = json.loads(out)
    assert code == 1
    assert {c["check"] for c in doc["checks"] if c["status"] == "fail"} == {"third-party-rules"}


def _copy_capture(tmp_path, scenario: str, drop: tuple[str, ...]):
    import shutil

    target = tmp_path / scenario.replace("/", "-")
    shutil.copytree(FIX / scenario, target)
    for name in drop:
        (target / name).unlink()
    return target


def test_capture_without_api_json_still_answers(capsys, tmp_path):
    capture = _copy_capture(tmp_path, "iptables/healthy", ("api.json",))
    code, out, _ = run_cli(capsys, "nftables", "--from", str(capture), "-o", "json")
    doc = json.loads(out)
    # v1.30 is alpha: without the config nobody can say whether the feature gate is on
    assert code == 3 and doc["verdict"] == "could not tell"
    version = next(c for c in doc["checks"] if c["check"] == "kube-proxy-version")
    assert version["status"] == "unknown" and "meta.json kube_proxy_version: v1.30.3" in version["evidence"]
    assert any("no capture has api.json" in n for n in doc["notes"])
    third = next(c for c in doc["checks"] if c["check"] == "third-party-rules")
    assert third["status"] == "pass"  # node checks still ran


def test_capture_without_kernel_cannot_tell(capsys, tmp_path):
    capture = _copy_capture(tmp_path, "iptables/healthy", ("kernel.txt",))
    code, out, _ = run_cli(capsys, "nftables", "--from", str(capture), "-o", "json")
    doc = json.loads(out)
    assert code == 3 and doc["verdict"] == "could not tell"
    kernel = [c for c in doc["checks"] if c["check"] == "kernel-version" and c["scope"] == "node pdnode1"]
    assert kernel[0]["status"] == "unknown" and kernel[0]["essential"]
