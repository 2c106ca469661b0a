"""`check`: offline from captures and the sample, live against the test API server; exit codes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kubectl_proxydoctor.cli import main
from tests.api_fixtures import api_server, kube_api  # noqa: F401  (pytest fixtures)

FIXTURES = Path(__file__).parent / "fixtures"
STALE = FIXTURES / "iptables" / "stale-endpoint"
HEALTHY = FIXTURES / "iptables" / "healthy"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def test_sample_shows_stale_endpoint_and_exits_1(capsys) -> None:
    code, out, _ = run(capsys, "check", "--sample")
    assert code == 1
    assert "stale-endpoint" in out and "10.244.0.12:8080" in out and "default/web" in out
    assert "fix:" in out and "service ports" in out


def test_healthy_capture_exits_0(capsys) -> None:
    code, out, _ = run(capsys, "check", "--from", str(HEALTHY))
    assert code == 0
    assert "16 service ports: 16 ok" in out
    assert "ERROR" not in out


def test_json_report_shape(capsys) -> None:
    code, out, _ = run(capsys, "check", "--from", str(STALE), "-o", "json")
    assert code == 1
    doc = json.loads(out)
    assert set(doc) >= {"node", "mode", "modes_found", "sources", "services", "findings"}
    assert doc["node"] == "pdnode1" and doc["mode"] == "iptables"
    assert doc["sources"]["api"].startswith("ok")
    web = [s for s in doc["services"] if s["service"] == "default/web"][0]
    assert web == {
        **web,
        "port": "http",
        "protocol": "TCP",
        "status": "drift",
        "frontends": ["10.96.100.10:80"],
        "expected_endpoints": ["10.244.0.11:8080", "10.244.0.13:8080"],
        "programmed_endpoints": ["10.244.0.11:8080", "10.244.0.12:8080", "10.244.0.13:8080"],
    }
    [finding] = [f for f in doc["findings"] if f["code"] == "stale-endpoint"]
    assert set(finding) >= {"code", "severity", "service", "port", "message", "evidence", "fix"}
    assert (
        finding["severity"] == "error" and finding["service"] == "default/web" and finding["port"] == "http"
    )
    assert any("10.244.0.12:8080" in e for e in finding["evidence"])


def test_yaml_equals_json(capsys) -> None:
    _, out_json, _ = run(capsys, "check", "--from", str(STALE), "-o", "json")
    code, out_yaml, _ = run(capsys, "check", "--from", str(STALE), "-o", "yaml")
    assert code == 1
    assert yaml.safe_load(out_yaml) == json.loads(out_json)


def test_namespace_filter(capsys) -> None:
    code, out, _ = run(capsys, "check", "--from", str(STALE), "-n", "shop", "-o", "json")
    doc = json.loads(out)
    assert code == 0
    assert {s["service"] for s in doc["services"]} == {"shop/cart"}
    assert all(f["service"] in (None,) or f["service"].startswith("shop/") for f in doc["findings"])


def test_usage_errors_exit_2(capsys) -> None:
    code, _, err = run(capsys, "check", "--from", str(STALE), "-o", "xml")
    assert code == 2 and "unknown output format" in err
    code, _, err = run(capsys, "check", "--from", str(STALE), "--sample")
    assert code == 2
    code, _, err = run(capsys, "check", "--from", str(STALE), "-n", "a", "-A")
    assert code == 2 and "exclude" in err


def test_capture_without_api_json_exits_3(capsys, tmp_path: Path) -> None:
    capture = tmp_path / "node"
    shutil.copytree(STALE, capture)
    (capture / "api.json").unlink()
    code, out, _ = run(capsys, "check", "--from", str(capture), "-o", "json")
    doc = json.loads(out)
    assert code == 3
    assert doc["services"] == [] and doc["sources"]["api"].startswith("unavailable")
    assert any("node-only" in n for n in doc["notes"])


def test_broken_api_json_is_one_line_error(capsys, tmp_path: Path) -> None:
    capture = tmp_path / "node"
    shutil.copytree(STALE, capture)
    (capture / "api.json").write_text('{"items": [')
    code, out, err = run(capsys, "check", "--from", str(capture))
    assert code == 3 and "api.json" in err and "Traceback" not in err
    (capture / "api.json").write_text(
        json.dumps(
            {
                "kind": "List",
                "items": [
                    {
                        "kind": "Service",
                        "metadata": {"name": "x", "namespace": "d"},
                        "spec": {"clusterIP": "10.96.0.1", "ports": [{"port": "eighty"}]},
                    }
                ],
            }
        )
    )
    code, out, err = run(capsys, "check", "--from", str(capture))
    assert code == 3 and "eighty" in err and "Traceback" not in err


# -- live API (the real kubernetes client against tests/apiserver.py) ---------------------------------


def test_live_api_drift(capsys, kube_api) -> None:  # noqa: F811
    api = kube_api(STALE / "api.json")
    code, out, _ = run(
        capsys, "check", "--from", str(STALE), "--kubeconfig", str(api.kubeconfig), "-o", "json"
    )
    doc = json.loads(out)
    assert code == 1
    assert doc["sources"]["api"] == "ok"
    assert [f["code"] for f in doc["findings"] if f["severity"] == "error"] == ["stale-endpoint"]
    assert api.server.count("/api/v1/services") >= 1


def test_live_api_paginated_read_feeds_analysis(kube_api) -> None:  # noqa: F811
    from kubectl_proxydoctor.analysis import analyse
    from kubectl_proxydoctor.collect.api import read_cluster
    from kubectl_proxydoctor.snapshot import NodeSnapshot

    api = kube_api(HEALTHY / "api.json")
    cluster = read_cluster(str(api.kubeconfig), node_name="pdnode1", page_size=3)
    assert api.server.count("/api/v1/services") >= 6  # 18 Services in pages of 3
    report = analyse(NodeSnapshot.load(HEALTHY), cluster)
    assert report.exit_code == 0
    assert [s.status for s in report.services] == ["ok"] * 16


def test_live_api_forbidden_exits_3_with_node_only_checks(capsys, kube_api) -> None:  # noqa: F811
    api = kube_api(STALE / "api.json")
    api.server.forbid("list", "endpointslices")
    code, out, _ = run(
        capsys, "check", "--from", str(STALE), "--kubeconfig", str(api.kubeconfig), "-o", "json"
    )
    doc = json.loads(out)
    assert code == 3
    assert "forbidden" in doc["sources"]["api"] and "endpointslices" in doc["sources"]["api"]
    assert not [f for f in doc["findings"] if f["code"] == "stale-endpoint"]


def test_live_api_unreachable_exits_3(capsys, tmp_path: Path) -> None:
    from tests.apiserver import write_kubeconfig

    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(kubeconfig, {"test": "http://127.0.0.1:9"})
    code, out, _ = run(capsys, "check", "--from", str(STALE), "--kubeconfig", str(kubeconfig))
    assert code == 3
    assert "unreachable" in out


def test_help_is_fast_and_lists_options() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "kubectl_proxydoctor", "check", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--kubeconfig" in done.stdout and "--node-name" in done.stdout and "yaml" in done.stdout
    imported = set(re.findall(r"\|\s+([\w.]+)\s*$", done.stderr, re.M))
    assert "typer" in imported  # the probe works
    assert not imported & {"kubernetes", "textual", "pyroute2", "nftables", "yaml"}


def test_generated_large_cluster_layout(capsys, tmp_path: Path) -> None:
    """kube-proxy drops endpoint-rule comments above 1000 endpoints: hashes identify them."""
    from bench.bench_check import generate

    sizes = generate(tmp_path / "node", services=520, endpoints=2, drift=3)
    assert sizes["endpoints"] > 1000
    assert "-> 10.64" not in (tmp_path / "node" / "iptables-save.txt").read_text()  # no endpoint comments
    code, out, _ = run(capsys, "check", "--from", str(tmp_path / "node"), "-o", "json")
    doc = json.loads(out)
    assert code == 1
    stale = [f for f in doc["findings"] if f["code"] == "stale-endpoint"]
    assert sorted(f["service"] for f in stale) == ["ns0/svc0", "ns1/svc1", "ns2/svc2"]
    assert sum(s["status"] == "ok" for s in doc["services"]) == 517
    code, out, _ = run(capsys, "check", "--from", str(tmp_path / "node"), "--node-name", "bench-node")
    assert code == 1
    assert "517 ok ports not listed" in out.replace("\n", " ") and "ns0/svc0" in out


def test_status_colour_follows_worst_finding() -> None:
    from kubectl_proxydoctor.model import Finding, ServicePortName
    from kubectl_proxydoctor.render.report_text import status_style
    from kubectl_proxydoctor.report import NodeReport, ServiceStatus

    name = ServicePortName("default", "web", "http", "TCP")
    report = NodeReport(node="n", mode="iptables")
    status = ServiceStatus(name, "drift")
    report.findings = [Finding.for_port(name, code="uneven-probability", severity="warning", message="m")]
    assert status_style(report, status) == "yellow"
    report.findings.append(Finding.for_port(name, code="stale-endpoint", severity="error", message="m"))
    assert status_style(report, status) == "bold red"
    assert status_style(report, ServiceStatus(name, "ok")) == "green"
    assert status_style(report, ServiceStatus(name, "not-programmed")) == "bold red"
