"""api.json is decoded once per run also where the IPVS tracer names frontends (it decoded the file
again for every frontend traced) and where `check -n` filters the cluster (a copy, not the shared
decoded capture)."""

from __future__ import annotations

import json

import pytest

from kubectl_proxydoctor.cluster import of_capture
from kubectl_proxydoctor.errors import ParseError
from kubectl_proxydoctor.snapshot import NodeSnapshot
from tests.test_node_state import FIXTURES, _count_decodes, _run

IPVS = FIXTURES / "ipvs" / "healthy"


@pytest.mark.parametrize("argv", [
    ("trace", "--dst", "10.96.100.10:80/tcp", "-o", "json"),
    ("svc", "web", "-n", "default", "-o", "json"),
    ("check", "-n", "default", "-o", "json"),
], ids=lambda a: a[0])
def test_ipvs_names_come_from_the_one_decoded_cluster(argv, monkeypatch, capsys):
    counts = _count_decodes(monkeypatch)
    code, out = _run(capsys, *argv, "--from", str(IPVS))
    assert code == 0 and json.loads(out)
    assert counts["api.json"] == 1, counts
    if argv[0] == "trace":  # the tracer did name the frontend from the API
        assert "default/web" in out


def test_the_shared_cluster_is_not_filtered_by_check_namespace():
    from kubectl_proxydoctor.cli.check import load_sources

    snapshot, cluster, _notes = load_sources(IPVS, False, None, None, "default", None)
    assert {s["metadata"]["namespace"] for s in cluster.services} == {"default"}
    shared = of_capture(snapshot)
    assert shared is of_capture(snapshot) and shared is not cluster  # decoded once, filtered a copy
    assert len({s["metadata"]["namespace"] for s in shared.services}) > 1


def test_an_unreadable_api_json_raises_each_time():
    snapshot = NodeSnapshot.from_files({"meta.json": "{}", "api.json": "{"})
    for _ in range(2):
        with pytest.raises(ParseError):
            of_capture(snapshot)


@pytest.mark.parametrize("command", ["check", "status"])
def test_an_api_json_from_another_cluster_is_still_decoded_once(command, tmp_path, monkeypatch, capsys):
    """api_sanity rejects it (another cluster's nodes): kube_proxy_version read its DaemonSets by
    decoding api.json a second time."""
    import shutil

    capture = tmp_path / "capture"
    shutil.copytree(FIXTURES / "iptables" / "healthy", capture)
    doc = json.loads((capture / "api.json").read_text())
    for item in doc["items"]:
        if item["kind"] == "Node":
            item["metadata"]["name"] = "another-cluster-node"
    doc["items"].append({"kind": "DaemonSet", "apiVersion": "apps/v1",
                         "metadata": {"name": "kube-proxy", "namespace": "kube-system"}, "spec": {}})
    (capture / "api.json").write_text(json.dumps(doc))
    counts = _count_decodes(monkeypatch)
    code, out = _run(capsys, command, "--from", str(capture), "-o", "json")
    assert code in (0, 3) and json.loads(out)
    assert counts["api.json"] == 1, counts


def test_migrate_check_decodes_each_capture_api_json_once(tmp_path, monkeypatch, capsys):
    """Two captures: the first's api.json is the cluster, the second's adds its Node; with
    DaemonSets and another cluster's nodes, kube_proxy_version read them by decoding again."""
    import shutil

    first, second = tmp_path / "a", tmp_path / "b"
    shutil.copytree(FIXTURES / "iptables" / "healthy", first)
    shutil.copytree(FIXTURES / "iptables" / "stale-endpoint", second)
    for capture in (first, second):
        doc = json.loads((capture / "api.json").read_text())
        for item in doc["items"]:
            if item["kind"] == "Node":
                item["metadata"]["name"] = f"another-cluster-{capture.name}"
        doc["items"].append({"kind": "DaemonSet", "apiVersion": "apps/v1",
                             "metadata": {"name": "kube-proxy", "namespace": "kube-system"}, "spec": {}})
        (capture / "api.json").write_text(json.dumps(doc))
    counts = _count_decodes(monkeypatch)
    code, out = _run(capsys, "migrate-check", "nftables", "--from", str(first), "--from", str(second),
                     "-o", "json")
    assert code in (0, 1, 3) and json.loads(out)["nodes"]
    assert counts["api.json"] == 2, counts  # one per capture


def test_serve_from_a_capture_decodes_api_json_once_per_check(tmp_path, monkeypatch):
    """serve --from: CaptureDir.cluster decoded api.json itself, and kube_proxy_version decoded it
    again for DaemonSets when api_sanity rejected the cluster."""
    import shutil

    from kubectl_proxydoctor.analysis import analyse
    from kubectl_proxydoctor.serve.sources import CaptureDir

    capture = tmp_path / "capture"
    shutil.copytree(FIXTURES / "iptables" / "healthy", capture)
    doc = json.loads((capture / "api.json").read_text())
    for item in doc["items"]:
        if item["kind"] == "Node":
            item["metadata"]["name"] = "another-cluster-node"
    doc["items"].append({"kind": "DaemonSet", "apiVersion": "apps/v1",
                         "metadata": {"name": "kube-proxy", "namespace": "kube-system"}, "spec": {}})
    (capture / "api.json").write_text(json.dumps(doc))
    counts = _count_decodes(monkeypatch)
    source = CaptureDir(capture)
    snapshot = source.read()
    analyse(snapshot, source.cluster(snapshot))
    assert counts["api.json"] == 1, counts
