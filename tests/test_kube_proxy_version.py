"""kube-proxy version evidence, rule-layout generation, and the API semantics they select."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from kubectl_proxydoctor.analysis import analyse
from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.expected import Semantics, expected_for_node
from kubectl_proxydoctor.kube_proxy_version import (
    from_cmdline,
    from_daemonsets,
    from_metrics,
    from_statusz,
    identify,
)
from kubectl_proxydoctor.snapshot import NodeSnapshot

FIXTURES = Path(__file__).parent / "fixtures"
V130 = FIXTURES / "iptables" / "healthy"
UPSTREAM = FIXTURES / "upstream" / "iptables" / "k8s-1.33plus"

STATUSZ = """kube-proxy statusz
Warning: This endpoint is not meant to be machine parseable, has no formatting compatibility \
guarantees and is for debugging purposes only.

Started: Fri Sep  6 06:19:51 UTC 2026
Up: 0 hr 00 min 30 sec
Go version: go1.24.4
Binary version: 1.34.2
Emulation version: 1.34
Paths: /configz /healthz /livez /metrics /readyz /statusz
"""


def test_version_sources_parse() -> None:
    metrics = 'kubernetes_build_info{git_version="v1.33.1",major="1",minor="33"} 1\n'
    assert from_metrics(metrics).version == "v1.33.1"
    assert from_metrics("# no build info\nfoo 1\n") is None
    assert from_statusz(STATUSZ).version == "v1.34.2"
    assert from_statusz("nothing here") is None
    ds = {"metadata": {"namespace": "kube-system", "name": "kube-proxy"},
          "spec": {"template": {"spec": {"containers": [{"image": "registry.k8s.io/kube-proxy:v1.35.0"}]}}}}
    assert from_daemonsets([ds]).version == "v1.35.0"
    digest = {"metadata": {}, "spec": {"template": {"spec": {"containers": [
        {"image": "registry.k8s.io/kube-proxy@sha256:" + "a" * 64}]}}}}
    assert from_daemonsets([digest]) is None  # a digest names no version
    assert from_cmdline("kube-proxy-cmdline.txt", "/usr/local/bin/kube-proxy --config=/x") is None
    assert from_cmdline("kube-proxy-cmdline.txt", "/opt/kube-proxy-v1.33.4 --v=2").version == "v1.33.4"


def test_v130_capture_is_identified_with_every_source() -> None:
    ident = identify(NodeSnapshot.load(V130))
    assert ident.version == "v1.30.3"
    assert ident.source == "kube-proxy-metrics.txt"
    sources = [e.source for e in ident.evidence]
    assert sources[0] == "kube-proxy-metrics.txt" and "api (kube-proxy DaemonSet)" in sources
    assert ident.layout is not None and ident.layout.min_version is None
    assert not ident.layout.large_cluster
    assert ident.semantics == Semantics((1, 30))
    assert ident.notes == []


def test_nfacct_layout_gives_a_minimum_version_and_disagreement_is_reported(tmp_path: Path) -> None:
    ident = identify(NodeSnapshot.load(UPSTREAM))
    assert ident.version is None
    assert ident.layout.min_version == (1, 31)
    assert any("localhost_nps_accepted_pkts" in e for e in ident.layout.evidence)
    assert ident.semantics == Semantics((1, 31))
    capture = tmp_path / "cap"
    shutil.copytree(UPSTREAM, capture)
    (capture / "kube-proxy-metrics.txt").write_text('kubernetes_build_info{git_version="v1.30.3"} 1\n')
    (capture / "kube-proxy-statusz.txt").write_text(STATUSZ)
    ident = identify(NodeSnapshot.load(capture))
    assert ident.version == "v1.30.3"
    assert any("sources disagree" in n for n in ident.notes)
    assert any("disagrees with the rules" in n for n in ident.notes)


def test_large_cluster_mode_rules_without_comments_check_healthy(tmp_path: Path) -> None:
    """Above 1000 endpoints kube-proxy writes KUBE-SEP rules and KUBE-SVC -> endpoint jumps
    without comments (appendServiceCommentLocked); derived from the upstream ruleset."""
    capture = tmp_path / "large"
    shutil.copytree(UPSTREAM, capture)
    lines = []
    for line in (UPSTREAM / "iptables-save.txt").read_text().splitlines():
        if line.startswith("-A KUBE-SEP-") or (line.startswith("-A KUBE-SVC-") and " -> " in line):
            line = re.sub(r' -m comment --comment ("[^"]*"|\S+)', "", line)
        lines.append(line)
    (capture / "iptables-save.txt").write_text("\n".join(lines) + "\n")
    snapshot = NodeSnapshot.load(capture)
    cluster = ClusterState.from_json_text((capture / "api.json").read_text())
    report = analyse(snapshot, cluster)
    assert report.kube_proxy.layout.large_cluster
    assert {s.name.key: s.status for s in report.services if s.status != "ok"} == {}
    assert [f.code for f in report.findings if f.severity == "error"] == []


def _hinted(zone_hints: bool, node_hints: bool, annotate: bool) -> ClusterState:
    def endpoint(ip: str, node: str, zone: str) -> dict:
        hints = {}
        if zone_hints:
            hints["forZones"] = [{"name": zone}]
        if node_hints:
            hints["forNodes"] = [{"name": node}]
        return {"addresses": [ip], "nodeName": node, "zone": zone, "hints": hints}

    annotations = {"service.kubernetes.io/topology-mode": "Auto"} if annotate else {}
    items = [
        {"kind": "Node", "metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "a"}}},
        {"kind": "Service", "metadata": {"namespace": "d", "name": "web", "annotations": annotations},
         "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}},
        {"kind": "EndpointSlice", "addressType": "IPv4",
         "metadata": {"namespace": "d", "name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
         "endpoints": [endpoint("10.0.0.1", "n1", "a"), endpoint("10.0.0.2", "n2", "a"),
                       endpoint("10.0.0.3", "n3", "b")],
         "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
    ]
    return ClusterState.from_list({"kind": "List", "items": items})


def _used(cluster: ClusterState, version: tuple[int, int] | None) -> list[str]:
    expected = expected_for_node(cluster, "n1", semantics=Semantics(version))
    (port,) = expected.ports.values()
    return [str(e) for e in port.cluster_endpoints]


def test_hints_are_honoured_as_each_release_honours_them() -> None:
    zone_only = _hinted(zone_hints=True, node_hints=False, annotate=False)
    # before 1.33 hints count only when the Service asks for them
    assert _used(zone_only, (1, 30)) == ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]
    assert _used(zone_only, (1, 33)) == ["10.0.0.1:80", "10.0.0.2:80"]
    both = _hinted(zone_hints=True, node_hints=True, annotate=True)
    assert _used(both, (1, 30)) == ["10.0.0.1:80", "10.0.0.2:80"]  # forNodes did not exist
    assert _used(both, (1, 33)) == ["10.0.0.1:80", "10.0.0.2:80"]  # PreferSameNode alpha, off
    assert _used(both, (1, 34)) == ["10.0.0.1:80"]  # PreferSameNode on by default
    assert _used(both, None) == ["10.0.0.1:80", "10.0.0.2:80"]  # unknown: v1.30 reading


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubectl_proxydoctor", *args], capture_output=True,
                          text=True, check=False)


def test_status_and_check_json_name_version_and_layout() -> None:
    result = _cli("status", "--from", str(V130))
    assert result.returncode == 0, result.stderr
    assert "kube-proxy v1.30.3 (from kube-proxy-metrics.txt)" in result.stdout
    assert "Layout:" in result.stdout
    result = _cli("status", "--from", str(UPSTREAM), "-o", "json")
    data = json.loads(result.stdout)["kube_proxy"]
    assert data["version"] is None and data["layout"]["min_version"] == "1.31"
    result = _cli("check", "--from", str(V130), "-o", "json")
    data = json.loads(result.stdout)["kube_proxy"]
    assert data["version"] == "v1.30.3"
    assert data["version_evidence"][0]["detail"].startswith("kubernetes_build_info")
    assert data["layout"]["generation"]


STATUSZ_SERVER = r"""
import http.server, sys
statusz = open(sys.argv[1]).read()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == '/statusz': code, body = 200, statusz
        elif self.path == '/proxyMode': code, body = 200, 'iptables'
        else: code, body = 404, '404 page not found'
        self.send_response(code); self.end_headers(); self.wfile.write(body.encode())
    def log_message(self, *a): pass
server = http.server.HTTPServer(('127.0.0.1', 10249), H)
print('ready', flush=True)
server.serve_forever()
"""


def test_collect_captures_statusz_and_it_names_the_version(netns, tmp_path: Path) -> None:
    from kubectl_proxydoctor.collect.node import collect_node

    ns = netns("pd-kpv-")
    page = tmp_path / "statusz.txt"
    page.write_text(STATUSZ)
    proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", STATUSZ_SERVER, str(page)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        snap = collect_node(netns=ns)
    finally:
        proc.kill()
        proc.wait()
    assert snap.text("kube-proxy-statusz.txt") == STATUSZ
    assert snap.sources["kube-proxy-statusz.txt"] == "ok"
    assert "HTTP 404" in snap.sources["kube-proxy-metrics.txt"]
    ident = identify(snap)
    assert (ident.version, ident.source) == ("v1.34.2", "kube-proxy-statusz.txt")


def test_statusz_not_served_is_not_a_read_failure(netns) -> None:
    from kubectl_proxydoctor.cli.status import is_read_failure
    from kubectl_proxydoctor.collect.node import collect_node

    snap = collect_node(netns=netns("pd-kpv-"))
    reason = snap.sources["kube-proxy-statusz.txt"]
    assert reason.startswith("unavailable: 127.0.0.1:10249/statusz")
    assert not snap.has("kube-proxy-statusz.txt")
    assert not is_read_failure(reason)


def test_nftables_layout_generation_names_the_oldest_release_and_drives_semantics() -> None:
    """Each upstream nftables generation is named from its own table, in status and in check."""
    upstream = FIXTURES / "upstream" / "nftables"
    seen = {}
    for name, oldest in (("1.31-era", "1.29"), ("1.34-era", "1.33"), ("master", "1.36")):
        snap = NodeSnapshot.load(upstream / name)
        ident = identify(snap, mode="nftables")
        assert ident.layout is not None and ident.layout.generation.startswith("nftables v1.")
        assert ident.layout.to_json()["min_version"] == oldest
        evidence = ident.layout.evidence
        assert evidence and all(e.startswith("table ip kube-proxy: ") for e in evidence)
        if ident.version is None:  # no version evidence: the layout's oldest release decides
            assert ident.semantics == Semantics(tuple(int(x) for x in oldest.split(".")))
        seen[name] = ident.layout.generation
    assert len(set(seen.values())) == 3
    report = analyse(NodeSnapshot.load(upstream / "master"),
                     ClusterState.from_json_text((upstream / "master" / "api.json").read_text()))
    assert report.kube_proxy.layout.generation == seen["master"]


OLD_KUBE_PROXY = r"""
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == '/metrics': code, body = 200, 'kubernetes_build_info{git_version="v1.30.3"} 1\n'
        elif self.path == '/proxyMode': code, body = 200, 'iptables'
        else: code, body = 404, '404 page not found'
        self.send_response(code); self.end_headers(); self.wfile.write(body.encode())
    def log_message(self, *a): pass
server = http.server.HTTPServer(('127.0.0.1', 10249), H)
print('ready', flush=True)
server.serve_forever()
"""


def test_statusz_404_of_a_pre_1_33_kube_proxy_is_absent_for_both_collectors(netns, tmp_path: Path) -> None:
    """kube-proxy < 1.33 answers /statusz with 404: not a read failure (status must not exit 3)."""
    import tarfile

    from kubectl_proxydoctor.cli.status import is_read_failure
    from kubectl_proxydoctor.collect.node import collect_node
    from kubectl_proxydoctor.sources import Readability, source_state

    ns = netns("pd-kpv-")
    script = Path(__file__).parents[1] / "kubectl_proxydoctor" / "scripts" / "collect-node.sh"
    proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", OLD_KUBE_PROXY],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        snap = collect_node(netns=ns)
        tar = tmp_path / "node.tar"
        with tar.open("wb") as out:
            subprocess.run(["ip", "netns", "exec", ns, "sh", str(script)], stdout=out, check=True,
                           stderr=subprocess.DEVNULL, timeout=120)
    finally:
        proc.kill()
        proc.wait()
    with tarfile.open(tar) as t:
        t.extractall(tmp_path / "script", filter="data")
    script_snap = NodeSnapshot.load(next((tmp_path / "script").iterdir()))
    for captured in (snap, script_snap):
        state = source_state(captured, "kube-proxy-statusz.txt")
        assert state.state is Readability.ABSENT, state
        assert "not served" in state.reason
        assert not is_read_failure(captured.sources.get("kube-proxy-statusz.txt")
                                   or captured.sources["kube-proxy-statusz"])
        assert identify(captured).version == "v1.30.3"
