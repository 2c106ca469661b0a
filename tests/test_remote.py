"""Remote collection through the API: a collector pod on the node, the script over exec.

The API is the test server (tests/node_apiserver.py) speaking HTTP and a real WebSocket to the
real kubernetes client; the "node" is a network namespace holding a real kube-proxy ruleset, in
which the exec'd collector script really runs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from kubectl_proxydoctor.collect.api import load_client
from kubectl_proxydoctor.errors import ProxyDoctorError
from kubectl_proxydoctor.remote.pod import collector_pod, selector_for
from kubectl_proxydoctor.remote.run import RemoteOptions, collect_remote
from tests.apiserver import write_kubeconfig
from tests.node_apiserver import NodeApiServer

FIX = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parents[1]

needs_netns = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("iptables-nft-restore") is None,
    reason="needs root and iptables-nft to stand a node up in a network namespace",
)


def _rules(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


@pytest.fixture
def node_netns():
    name = f"pd-rem-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        dump = (FIX / "iptables" / "healthy" / "iptables-nft-save.txt").read_text()
        subprocess.run(["ip", "netns", "exec", name, "iptables-nft-restore"], input=dump, text=True,
                       check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def server():
    srv = NodeApiServer.from_api_json(FIX / "iptables" / "healthy" / "api.json")
    with srv:
        yield srv


def _client(server, tmp_path):
    return load_client(str(write_kubeconfig(tmp_path / "kubeconfig", {"test": server.url}))).client


def _opts(**kw) -> RemoteOptions:
    return RemoteOptions(poll_interval=0.05, start_timeout=3, exec_timeout=60, **kw)


def test_pod_manifest_reads_only():
    pod = collector_pod("worker-1", image="example/img:1", deadline_seconds=120)
    spec = pod["spec"]
    ctr = spec["containers"][0]
    assert spec["nodeName"] == "worker-1" and spec["hostNetwork"] is True and spec["hostPID"] is False
    assert spec["tolerations"] == [{"operator": "Exists"}]
    assert spec["activeDeadlineSeconds"] == 120
    assert ctr["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]}
    assert ctr["securityContext"]["readOnlyRootFilesystem"] is True
    assert "privileged" not in ctr["securityContext"]
    assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == "kubectl-proxydoctor"
    assert selector_for("worker-1").endswith("=worker-1")


@needs_netns
def test_collects_the_node_through_a_pod_and_deletes_it(server, node_netns, tmp_path):
    server.add_node("remote-a", netns=node_netns)
    snap = collect_remote("remote-a", _client(server, tmp_path), _opts())
    loaded = subprocess.run(["ip", "netns", "exec", node_netns, "iptables-nft-save"], capture_output=True,
                            text=True, check=True).stdout
    assert snap.node == "remote-a"
    assert _rules(snap.text("iptables-nft-save.txt")) == _rules(loaded)
    assert snap.sources["iptables-nft"] == "ok"
    assert len(server.created) == 1 and server.created[0]["spec"]["nodeName"] == "remote-a"
    assert server.deleted == [server.created[0]["metadata"]["name"]]
    assert server.pods() == []
    assert server.execs and server.execs[0][:2] == ["sh", "-c"]


def test_pod_that_never_starts_times_out_and_is_deleted(server, tmp_path):
    server.add_node("stuck")
    server.pod_behaviour["stuck"] = "never-starts"
    with pytest.raises(ProxyDoctorError, match=r"did not start within 1 s.*ImagePullBackOff"):
        collect_remote("stuck", _client(server, tmp_path), RemoteOptions(poll_interval=0.05, start_timeout=1))
    assert server.pods() == [] and len(server.deleted) == 1


def test_not_ready_node_is_refused_before_any_pod(server, tmp_path):
    server.add_node("down", ready=False)
    with pytest.raises(ProxyDoctorError, match="node down is NotReady"):
        collect_remote("down", _client(server, tmp_path), _opts())
    assert server.created == []


def test_unknown_node(server, tmp_path):
    with pytest.raises(ProxyDoctorError, match="node 'nope' not found"):
        collect_remote("nope", _client(server, tmp_path), _opts())


def test_leftover_pod_of_a_killed_run_is_removed(server, tmp_path):
    server.add_node("stuck")
    server.pod_behaviour["stuck"] = "never-starts"
    old = collector_pod("stuck")
    old["metadata"]["namespace"] = "kube-system"
    old["status"] = {"phase": "Running"}
    server.objects["pods"].append(old)
    with pytest.raises(ProxyDoctorError):
        collect_remote("stuck", _client(server, tmp_path),
                       RemoteOptions(poll_interval=0.05, start_timeout=0.2))
    assert old["metadata"]["name"] in server.deleted
    assert server.pods() == []


def test_rbac_forbidden_pod_create_says_so(server, tmp_path):
    server.add_node("remote-a")
    server.forbidden.add(("create", "pods", None))
    with pytest.raises(ProxyDoctorError, match=r"forbidden: create pods in kube-system \(RBAC\)"):
        collect_remote("remote-a", _client(server, tmp_path), _opts())


def test_ctrl_c_deletes_the_pod(server, tmp_path):
    server.add_node("stuck")
    server.pod_behaviour["stuck"] = "never-starts"
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"test": server.url})
    # a user's Ctrl-C reaches an interactive run; a runner that starts the suite in the background
    # (an asynchronous list in a non-interactive shell) passes SIGINT on as ignored, so restore it
    code = textwrap.dedent(f"""
        import signal
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from kubectl_proxydoctor.collect.api import load_client
        from kubectl_proxydoctor.remote.run import RemoteOptions, collect_remote
        client = load_client({str(kubeconfig)!r}).client
        try:
            collect_remote("stuck", client, RemoteOptions(poll_interval=0.05, start_timeout=60))
        except KeyboardInterrupt:
            raise SystemExit(130)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        deadline = time.monotonic() + 20
        while not server.created and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.created, "the collector pod was never created"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 130
    finally:
        proc.kill()
    assert server.deleted == [server.created[0]["metadata"]["name"]]
    assert server.pods() == []


@needs_netns
def test_status_and_collect_with_node_option(server, node_netns, tmp_path):
    import json

    from kubectl_proxydoctor.snapshot import NodeSnapshot

    server.add_node("remote-a", netns=node_netns)
    kubeconfig = str(write_kubeconfig(tmp_path / "kubeconfig", {"test": server.url}))
    run = [sys.executable, "-m", "kubectl_proxydoctor"]
    status = subprocess.run([*run, "status", "--node", "remote-a", "--kubeconfig", kubeconfig, "-o", "json"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert "Traceback" not in status.stderr
    data = json.loads(status.stdout)
    assert data["node"] == "remote-a" and data["mode"] == "iptables"
    bundle = tmp_path / "remote-a.tar.gz"
    collected = subprocess.run([*run, "collect", "--node", "remote-a", "--kubeconfig", kubeconfig,
                                "-o", str(bundle)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert collected.returncode in (0, 3), collected.stderr
    assert "KUBE-SVC-CDGGSHYLG3RE2FKL" in NodeSnapshot.load(bundle).text("iptables-nft-save.txt")
    assert server.pods() == [] and len(server.deleted) == 2


@needs_netns
def test_check_svc_and_trace_with_node_option(server, node_netns, tmp_path):
    import json

    server.add_node("remote-a", netns=node_netns)
    kubeconfig = str(write_kubeconfig(tmp_path / "kubeconfig", {"test": server.url}))
    run = [sys.executable, "-m", "kubectl_proxydoctor"]
    check = subprocess.run([*run, "check", "--node", "remote-a", "--kubeconfig", kubeconfig, "-o", "json"],
                           capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert "Traceback" not in check.stderr
    report = json.loads(check.stdout)
    assert report["node"] == "remote-a" and report["mode"] == "iptables"
    statuses = {f"{s['service']}:{s['port']}": s["status"] for s in report["services"]}
    assert statuses["default/web:http"] == "ok"  # the healthy rules agree with the API
    svc = subprocess.run([*run, "svc", "web", "--node", "remote-a", "--kubeconfig", kubeconfig],
                         capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert "Traceback" not in svc.stderr and "10.244.0.12:8080" in svc.stdout
    trace = subprocess.run([*run, "trace", "--dst", "10.96.100.10:80", "--node", "remote-a",
                            "--kubeconfig", kubeconfig, "-o", "json"], capture_output=True, text=True,
                           timeout=180, cwd=ROOT)
    assert trace.returncode == 0, trace.stderr
    assert "10.244.0.13" in trace.stdout
    assert server.pods() == [] and len(server.deleted) == 3
