"""A real Prometheus server (Debian's prometheus package) scrapes `serve --from DIR`; the test asks
Prometheus's HTTP API for the drift metric: 0 on the healthy capture, 1 after an endpoint is removed
from the capture's api.json."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tests.serve_helpers import drop_endpoint, free_port, scrape, wait_for

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus (Debian package) not installed")
QUERY = 'sum(proxydoctor_drift_service_ports{job="proxydoctor"})'


def _query(port: int, query: str) -> list[dict] | None:
    status, body = scrape(port, "/api/v1/query?query=" + urllib.parse.quote(query))
    if status != 200:
        return None
    doc = json.loads(body)
    return doc["data"]["result"] if doc.get("status") == "success" else None


def _value(port: int, query: str) -> float | None:
    result = _query(port, query)
    return float(result[0]["value"][1]) if result else None


def _stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    try:
        return proc.communicate(timeout=20)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[1]


def test_prometheus_scrapes_serve(tmp_path: Path) -> None:
    capture = tmp_path / "node"
    shutil.copytree(FIXTURES / "iptables/healthy", capture)
    serve_port, prom_port = free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n- job_name: proxydoctor\n  static_configs:\n"
        f"  - targets: ['127.0.0.1:{serve_port}']\n    labels: {{node: pdnode1}}\n")
    serve = subprocess.Popen([sys.executable, "-m", "kubectl_proxydoctor", "serve", "--from", str(capture),
                              "--listen", f"127.0.0.1:{serve_port}", "--interval", "1", "--grace", "0"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    prom = subprocess.Popen([PROMETHEUS, f"--config.file={config}",
                             f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}",
                             "--storage.tsdb.retention.time=1h"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: scrape(prom_port, "/-/ready")[0] == 200, 60, what="Prometheus ready")
        wait_for(lambda: _value(prom_port, 'up{job="proxydoctor"}') == 1, 60, what="serve scraped")
        wait_for(lambda: _value(prom_port, QUERY) == 0, 30, what="drift 0 in Prometheus")
        drop_endpoint(capture / "api.json", "default", "web", "10.244.0.12")
        wait_for(lambda: _value(prom_port, QUERY) == 1, 30, what="drift 1 in Prometheus")
        [series] = _query(prom_port, 'proxydoctor_drift_service_ports{kind="drift",ip_family="IPv4"}')
        assert series["metric"]["node"] == "pdnode1" and series["value"][1] == "1"
        age = _value(prom_port,
                     'time() - proxydoctor_check_last_success_timestamp_seconds{job="proxydoctor"}')
        assert age is not None and age < 30
    finally:
        _stop(prom)
        serve_err = _stop(serve)
    assert "Traceback" not in serve_err, serve_err
