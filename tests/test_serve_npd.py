"""`check --npd`: node-problem-detector's custom plugin contract on real captures and the test API
server: exit 0 OK, 1 problem, 2 unknown, exactly one short line on stdout."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.apiserver import FakeApiServer, write_kubeconfig
from tests.conftest import FIXTURES


def _npd(*args: str) -> tuple[int, str, str]:
    done = subprocess.run([sys.executable, "-m", "kubectl_proxydoctor", "check", "--npd", *args],
                          capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout, done.stderr


def _one_line(out: str) -> str:
    lines = out.splitlines()
    assert len(lines) == 1, out
    assert len(lines[0]) <= 80
    return lines[0]


@pytest.mark.parametrize("fixture, code, text", [
    ("iptables/healthy", 0, "ok: 16 service ports match the API"),
    ("nftables/healthy", 0, "ok: 16 service ports match the API"),
    ("iptables/stale-endpoint", 1, "drift: stale-endpoint default/web:http"),
    ("nftables/new-service", 1, "drift: not-programmed default/late:http"),
    ("iptables/chain-flushed", 1, "drift: chain-missing default/web:http (+3 more)"),
])
def test_npd_on_fixtures(fixture: str, code: int, text: str) -> None:
    rc, out, err = _npd("--from", str(FIXTURES / fixture))
    assert rc == code, (out, err)
    assert _one_line(out) == text


def test_npd_unknown_without_the_api(tmp_path: Path) -> None:
    capture = tmp_path / "node"
    shutil.copytree(FIXTURES / "iptables/stale-endpoint", capture)
    (capture / "api.json").unlink()
    rc, out, _ = _npd("--from", str(capture))
    assert rc == 2 and _one_line(out) == "unknown: could not read api"


def test_npd_unknown_when_the_api_forbids(tmp_path: Path) -> None:
    server = FakeApiServer.from_api_json(FIXTURES / "iptables/healthy/api.json")
    server.forbid("list", "endpointslices")
    with server:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"test": server.url})
        rc, out, _ = _npd("--from", str(FIXTURES / "iptables/healthy"), "--kubeconfig", str(kubeconfig))
    assert rc == 2 and _one_line(out) == "unknown: could not read api"
    with FakeApiServer.from_api_json(FIXTURES / "iptables/stale-endpoint/api.json") as server:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"test": server.url})
        rc, out, _ = _npd("--from", str(FIXTURES / "iptables/stale-endpoint"),
                          "--kubeconfig", str(kubeconfig))
    assert rc == 1 and _one_line(out) == "drift: stale-endpoint default/web:http"


@pytest.mark.parametrize("args, start", [
    (["--from", "/nonexistent/capture"], "unknown: /nonexistent/capture: no such file"),
    (["--sample", "-n", "a", "-A"], "unknown: -n/--namespace and -A/--all-namespaces exclude"),
])
def test_npd_failures_are_unknown_not_problem(args: list[str], start: str) -> None:
    rc, out, err = _npd(*args)
    assert rc == 2 and _one_line(out).startswith(start) and "Traceback" not in err
