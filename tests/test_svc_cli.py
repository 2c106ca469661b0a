"""`svc NAME`: API view, programmed rules per mode, a trace per frontend, findings; exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from kubectl_proxydoctor.analysis import analyse
from kubectl_proxydoctor.cli import main
from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.render.report_text import render_service, trace_packets
from kubectl_proxydoctor.snapshot import NodeSnapshot

FIXTURES = Path(__file__).parent / "fixtures"
STALE = FIXTURES / "iptables" / "stale-endpoint"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def test_svc_web_end_to_end(capsys) -> None:
    code, out, _ = run(capsys, "svc", "web", "--from", str(STALE))
    assert code == 1
    # API view: endpoints and their conditions
    assert "10.244.0.11:8080" in out and "ready" in out
    # what the node programmed, per mode
    assert "iptables-nft" in out and "10.244.0.12:8080" in out
    # a trace of the cluster IP as a tree, ending in DNAT
    assert "10.96.100.10:80/tcp" in out and "DNAT" in out and "KUBE-SVC-CDGGSHYLG3RE2FKL" in out
    # and its findings
    assert "stale-endpoint" in out and "fix:" in out


def test_svc_ok_service_exits_0(capsys) -> None:
    code, out, _ = run(capsys, "svc", "cart", "-n", "shop", "--from", str(STALE))
    assert code == 0
    assert "no findings" in out and "10.96.100.30:80/tcp" in out


def test_svc_shows_why_endpoints_are_unused(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    code, out, _ = run(capsys, "svc", "terminating", "--from", str(STALE))
    assert code == 0
    assert "terminating" in out and "must not take new connections" in out


def test_svc_json_only_this_service(capsys) -> None:
    code, out, _ = run(capsys, "svc", "web", "--from", str(STALE), "-o", "json")
    doc = json.loads(out)
    assert code == 1
    assert {s["service"] for s in doc["services"]} == {"default/web"}
    assert {f["service"] for f in doc["findings"]} <= {"default/web", None}


def test_svc_deleted_service_still_programmed(capsys) -> None:
    code, out, _ = run(capsys, "svc", "web-np", "--from", str(FIXTURES / "iptables" / "deleted-service"))
    assert code == 1
    assert "no such Service" in out and "stale-service" in out and "nodeport:30080" in out


def test_svc_unknown_service_is_usage_error(capsys) -> None:
    code, _, err = run(capsys, "svc", "nope", "--from", str(STALE))
    assert code == 2 and "default/nope" in err


def test_svc_without_api_exits_3(capsys, tmp_path: Path) -> None:
    capture = tmp_path / "node"
    shutil.copytree(STALE, capture)
    (capture / "api.json").unlink()
    code, out, _ = run(capsys, "svc", "web", "--from", str(capture))
    assert code == 3
    assert "iptables-nft" in out  # what the node programmed is still shown


def test_nodeport_trace_packet_uses_node_ip() -> None:
    capture = FIXTURES / "iptables" / "healthy"
    report = analyse(
        NodeSnapshot.load(capture), ClusterState.from_json_text((capture / "api.json").read_text())
    )
    packets = trace_packets(report, "default", "web-np")
    assert set(packets) == {"10.96.100.11:8080/tcp", "nodeport:30080/tcp"}
    assert packets["nodeport:30080/tcp"].dst == "172.30.0.1"
    console = Console(record=True, width=200)
    render_service(report, "default", "web-np", {}, console)
    text = console.export_text()
    assert "type NodePort" in text and "externalTrafficPolicy Cluster" in text
