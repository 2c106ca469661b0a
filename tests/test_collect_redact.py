"""A redacted capture is as diagnosable as the original, and gives nothing away."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from kubectl_proxydoctor.analysis import analyse
from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.redact import redact_snapshot
from kubectl_proxydoctor.snapshot import NodeSnapshot

FIX = Path(__file__).parent / "fixtures"
CAPTURES = ["iptables/stale-endpoint", "iptables/stale-udp-conntrack", "nftables/stale-endpoint",
            "ipvs/stale-endpoint", "iptables/lb-and-local" if (FIX / "iptables/lb-and-local").exists()
            else "iptables/healthy"]


def _report(snapshot: NodeSnapshot):
    return analyse(snapshot, ClusterState.from_json_text(snapshot.text("api.json")), node_name=snapshot.node)


@pytest.mark.parametrize("capture", CAPTURES)
def test_redacted_capture_gives_the_same_diagnosis(capture):
    original = NodeSnapshot.load(FIX / capture)
    redacted = redact_snapshot(original, key=b"fixed test key")
    before, after = _report(original), _report(redacted)
    assert sorted(s.status for s in before.services) == sorted(s.status for s in after.services)
    assert sorted((f.code, f.severity) for f in before.findings) == \
        sorted((f.code, f.severity) for f in after.findings)
    # every service is reported under its redacted name
    for status in after.services:
        assert status.name.name.startswith("svc-") or status.name.name == "kubernetes"


@pytest.mark.parametrize("capture", CAPTURES)
def test_no_original_address_or_name_survives(capture):
    original = NodeSnapshot.load(FIX / capture)
    redacted = redact_snapshot(original, key=b"fixed test key")
    api = json.loads(original.text("api.json"))
    secrets = {original.node}
    for item in api["items"]:
        if item["kind"] in ("Service", "Node"):
            secrets.add(item["metadata"]["name"])
        for ep in item.get("endpoints") or []:
            secrets.update(ep.get("addresses") or [])
            secrets.add((ep.get("targetRef") or {}).get("name"))
        for ip in (item.get("spec") or {}).get("clusterIPs") or []:
            secrets.add(ip)
    secrets -= {None, "None", "kubernetes", "10.96.0.1"}  # headless "None"; the default Service
    texts = "\n".join(redacted.files.values()) + json.dumps(redacted.meta)
    for secret in sorted(secrets):
        assert not _word_in(secret, texts), f"{secret!r} survived redaction in {capture}"


def _word_in(word: str, text: str) -> bool:
    import re

    return re.search(rf"(?<![\w.-]){re.escape(word)}(?![\w-]|\.\d)", text) is not None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a network namespace")
def test_collect_redact_command(tmp_path):
    ns = f"pd-red-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        dump = (FIX / "iptables" / "healthy" / "iptables-nft-save.txt").read_text()
        subprocess.run(["ip", "netns", "exec", ns, "iptables-nft-restore"], input=dump, text=True, check=True)
        out = tmp_path / "capture.tar.gz"
        proc = subprocess.run([sys.executable, "-m", "kubectl_proxydoctor", "collect", "--netns", ns,
                               "--redact", "-o", str(out)], capture_output=True, text=True, timeout=120)
        assert proc.returncode in (0, 3), proc.stderr
        assert "redacted" in proc.stdout
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    snap = NodeSnapshot.load(out)
    assert snap.meta["redacted"] is True
    rules = snap.text("iptables-nft-save.txt")
    assert "10.96.100.10" not in rules and "10.244.0.12" not in rules
    assert "KUBE-SVC-CDGGSHYLG3RE2FKL" not in rules  # the hash of the real name is not kept either
    assert rules.count("-j KUBE-SVC-") == dump.count("-j KUBE-SVC-")
