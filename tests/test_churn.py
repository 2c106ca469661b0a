"""Consistent snapshots under churn: while a writer replaces kube-proxy's ruleset in the same
namespace (as every kube-proxy sync does, here > 20 times a second, alternating between two
valid states), every collection must read one state or the other, never a mix, and produce no
phantom finding."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from kubectl_proxydoctor.analysis import analyse
from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.collect.node import collect_node
from kubectl_proxydoctor.modes import interpret_all
from kubectl_proxydoctor.snapshot import NodeSnapshot
from tests.test_scan import CAPTURE, _synced_rules

COLLECTIONS = int(os.environ.get("PROXYDOCTOR_CHURN_COLLECTIONS", "200"))

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("iptables-nft-restore") is None,
    reason="needs root and iptables-nft to churn rules in a network namespace",
)

WRITER = r"""
import subprocess, sys
ns, a, b, stop = sys.argv[1:5]
states = [open(a).read(), open(b).read()]
n = 0
with open(stop + ".count", "w") as out:
    while True:
        try:
            open(stop).close()
            break
        except FileNotFoundError:
            pass
        subprocess.run(["iptables-nft-restore", "--noflush"], input=states[n % 2], text=True, check=True)
        n += 1
        out.seek(0); out.write(str(n)); out.flush()
"""


SVC_CHAIN = "KUBE-SVC-CDGGSHYLG3RE2FKL"  # default/web:http
SEP_CHAIN = "KUBE-SEP-GFGX6LKJVO6TG6Y4"  # its endpoint 10.244.0.12:8080


def _partial_sync(rules: str) -> str:
    """The `iptables-restore --noflush` input of a kube-proxy partial sync towards ``rules``: only
    default/web's service chain, redeclared (so flushed) with its new jumps."""
    lines = [f":{SVC_CHAIN} - [0:0]"]
    lines += [line for line in rules.splitlines() if line.startswith(f"-A {SVC_CHAIN} ")]
    return "\n".join(["*nat", *lines, "COMMIT", ""])


def _signature(snapshot: NodeSnapshot) -> frozenset:
    """What the iptables rules program, in a form two reads of one state agree on."""
    out = set()
    for view in interpret_all(snapshot, modes=("iptables",)):
        for (name, family), port in view.ports.items():
            for fe in port.frontends:
                targets = tuple(sorted((str(t.endpoint), round(t.probability, 6)) for t in fe.targets))
                out.add((view.source, name.key, family, fe.kind, fe.ip, fe.port, targets))
    return frozenset(out)


def _finding_keys(snapshot: NodeSnapshot, cluster: ClusterState) -> frozenset:
    report = analyse(snapshot, cluster, node_name="pdnode1")
    return frozenset((f.code, f.service, f.port, f.message) for f in report.findings
                     if f.code not in ("kube-proxy-not-captured",))


def test_collections_under_churn_read_one_state_or_the_other(tmp_path):
    stale_rules = (CAPTURE / "iptables-nft-save.txt").read_text()
    states = {"stale": stale_rules, "synced": _synced_rules(stale_rules)}
    files = {}
    for label, text in states.items():
        files[label] = tmp_path / f"{label}.rules"
        files[label].write_text(_partial_sync(text))
    cluster = ClusterState.from_json_text((CAPTURE / "api.json").read_text())
    base = {k: v for k, v in NodeSnapshot.load(CAPTURE).files.items()
            if k in ("ip-addr.json", "kernel.txt", "sysctl.txt")}

    def as_capture(rules: str) -> NodeSnapshot:
        return NodeSnapshot.from_files({**base, "iptables-nft-save.txt": rules})


    ns = f"pd-churn-{uuid.uuid4().hex[:8]}"
    stop = tmp_path / "stop"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    writer = None
    try:
        subprocess.run(["ip", "netns", "exec", ns, "iptables-nft-restore"], input=stale_rules, text=True,
                       check=True)
        # the two states, as the collector reads them from the namespace when nothing churns
        reference_rules, reference_findings = {}, {}
        for label in ("synced", "stale"):
            subprocess.run(["ip", "netns", "exec", ns, "iptables-nft-restore", "--noflush"],
                           input=files[label].read_text(), text=True, check=True)
            snap = as_capture(collect_node(netns=ns, node_name="pdnode1").text("iptables-nft-save.txt"))
            reference_rules[label] = _signature(snap)
            reference_findings[label] = _finding_keys(snap, cluster)
        assert reference_rules["stale"] != reference_rules["synced"]
        assert reference_rules["stale"] == _signature(as_capture(stale_rules))
        # the writer runs inside the namespace, like kube-proxy, re-writing the ruleset back to back
        writer = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", WRITER, ns,
                                   str(files["stale"]), str(files["synced"]), str(stop)])
        started = time.monotonic()
        seen = {"stale": 0, "synced": 0}
        for i in range(COLLECTIONS):
            live = collect_node(netns=ns, node_name="pdnode1")
            rules = live.text("iptables-nft-save.txt")
            assert rules, live.sources
            snap = as_capture(rules)
            signature = _signature(snap)
            matches = [label for label, ref in reference_rules.items() if ref == signature]
            assert matches, f"collection {i} read a mix of two rule sets"
            seen[matches[0]] += 1
            assert _finding_keys(snap, cluster) == reference_findings[matches[0]], f"phantom finding at {i}"
        elapsed = time.monotonic() - started
    finally:
        stop.touch()
        if writer is not None:
            writer.wait(timeout=30)
        subprocess.run(["ip", "netns", "del", ns], check=False)
    writes = int((tmp_path / "stop.count").read_text() or 0)
    assert writes / elapsed >= 20, f"the writer only managed {writes / elapsed:.1f} syncs/s"
    assert seen["stale"] and seen["synced"], seen
