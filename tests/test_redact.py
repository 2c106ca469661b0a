import ipaddress
import json
from pathlib import Path

from kubectl_proxydoctor.redact import Redactor, redact_snapshot
from kubectl_proxydoctor.snapshot import NodeSnapshot

FIX = Path(__file__).parent / "fixtures"


def _snap():
    return NodeSnapshot.load(FIX / "iptables" / "stale-endpoint")


def test_no_original_address_or_name_survives():
    snap = _snap()
    red = redact_snapshot(snap, key=b"test-key")
    for text in red.files.values():
        for secret in ("10.96.100.10", "10.244.0.12", "172.30.0.1", "203.0.113.10", "pdnode1",
                       "pdpod2", "web-local", "default/web:http"):
            assert secret not in text
    assert red.meta["redacted"] is True and red.node != snap.node
    # loopback and masks are kept: they carry meaning, not identity
    assert "127.0.0.0/8" in red.files["iptables-save.txt"]
    assert "--mask 255.255.255.255" in red.files["iptables-save.txt"]


def test_prefixes_are_preserved_and_mapping_is_consistent():
    r = Redactor(key=b"k")
    pod_net = ipaddress.ip_network(r.text("10.244.0.0/16"))
    for pod in ("10.244.0.11", "10.244.0.12", "10.244.1.21"):
        assert ipaddress.ip_address(r.ip(pod)) in pod_net
    assert ipaddress.ip_address(r.ip("10.96.100.10")) not in pod_net
    assert r.ip("10.244.0.11") == Redactor(key=b"k").ip("10.244.0.11")
    assert r.ip("10.244.0.11") != r.ip("10.244.0.12")


def test_ipvs_hex_addresses_are_redacted_like_dotted_ones():
    snap = NodeSnapshot.load(FIX / "ipvs" / "healthy")
    red = redact_snapshot(snap, key=b"k")
    mapped = Redactor(key=b"k").ip("10.96.100.10")
    hexed = f"{int(ipaddress.IPv4Address(mapped)):08X}:0050"
    assert hexed in red.files["proc-net-ip_vs.txt"]
    assert "0A60640A:0050" not in red.files["proc-net-ip_vs.txt"]


def test_secrets_are_dropped():
    doc = {"apiVersion": "v1", "kind": "List", "items": [
        {"kind": "Secret", "metadata": {"name": "s", "namespace": "default"}, "data": {"k": "c2VjcmV0"}},
        {"kind": "Service", "metadata": {"name": "a", "namespace": "default"}, "spec": {}},
    ]}
    red = redact_snapshot(NodeSnapshot.from_files({"api.json": json.dumps(doc)}), key=b"k")
    items = json.loads(red.files["api.json"])["items"]
    assert [i["kind"] for i in items] == ["Service"]
    assert "c2VjcmV0" not in red.files["api.json"]
