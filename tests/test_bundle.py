"""Capture bundles: save/load round trips, and bad bundles give one clear line and exit 3."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from kubectl_proxydoctor.errors import BundleError
from kubectl_proxydoctor.snapshot import NodeSnapshot
from tests.conftest import FIXTURES

ROOT = Path(__file__).parents[1]


def _same(a: NodeSnapshot, b: NodeSnapshot) -> None:
    assert a.files == b.files
    assert a.sources == b.sources
    assert a.meta == b.meta


@pytest.mark.parametrize("fixture", ["iptables/sync-failing", "nftables/healthy", "ipvs/healthy"])
@pytest.mark.parametrize("name", ["capture", "capture.tar.gz"])
def test_save_load_round_trip(tmp_path, fixture, name):
    original = NodeSnapshot.load(FIXTURES / fixture)
    original.sources["conntrack"] = "unavailable: needs root (CAP_NET_ADMIN)"
    original.meta["kube_proxy_healthz_status"] = 503
    path = original.save(tmp_path / name)
    loaded = NodeSnapshot.load(path)
    _same(original, loaded)
    # and once more: a loaded bundle saves to the same thing
    _same(loaded, NodeSnapshot.load(loaded.save(tmp_path / ("again-" + name))))


def test_tar_wrapped_in_a_top_directory_loads(tmp_path):
    src = FIXTURES / "iptables" / "healthy"
    bundle = tmp_path / "b.tar.gz"
    with tarfile.open(bundle, "w:gz") as tar:
        tar.add(src, arcname="node1")
    _same(NodeSnapshot.load(src), NodeSnapshot.load(bundle))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubectl_proxydoctor", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)


def _one_clear_line(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0]


def _good_bundle(tmp_path: Path) -> Path:
    return NodeSnapshot.load(FIXTURES / "iptables" / "healthy").save(tmp_path / "good.tar.gz")


def test_truncated_bundle(tmp_path):
    data = _good_bundle(tmp_path).read_bytes()
    bad = tmp_path / "truncated.tar.gz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="truncated.tar.gz"):
        NodeSnapshot.load(bad)
    _one_clear_line(_cli("status", "--from", str(bad)), "truncated.tar.gz", "corrupt or truncated")


def test_corrupt_bundle(tmp_path):
    data = bytearray(_good_bundle(tmp_path).read_bytes())
    for i in range(200, min(len(data), 1200)):
        data[i] ^= 0x5A
    bad = tmp_path / "corrupt.tar.gz"
    bad.write_bytes(bytes(data))
    _one_clear_line(_cli("status", "--from", str(bad)), "corrupt.tar.gz")


def test_not_a_bundle(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello\n")
    _one_clear_line(_cli("status", "--from", str(bad)), "notes.txt", "not a capture directory")
    _one_clear_line(_cli("status", "--from", str(tmp_path / "missing")), "no such file")


def _tar_with(path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


@pytest.mark.parametrize("name", ["../evil.txt", "/etc/evil.txt", "a/../../evil.txt"])
def test_path_traversal_member(tmp_path, name):
    info = tarfile.TarInfo(name)
    info.size = 4
    bad = _tar_with(tmp_path / "traversal.tar.gz", info, b"evil")
    _one_clear_line(_cli("status", "--from", str(bad)), "unsafe member path")
    assert not (tmp_path.parent / "evil.txt").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_link_members_are_refused(tmp_path, kind):
    info = tarfile.TarInfo("iptables-save.txt")
    info.type = kind
    info.linkname = "/etc/shadow"
    bad = _tar_with(tmp_path / "link.tar.gz", info)
    _one_clear_line(_cli("status", "--from", str(bad)), "is a link")


def test_symlink_in_a_capture_directory_is_refused(tmp_path):
    capture = tmp_path / "capture"
    capture.mkdir()
    (capture / "kernel.txt").write_text("6.1.0\n")
    os.symlink("/etc/hostname", capture / "iptables-save.txt")
    _one_clear_line(_cli("status", "--from", str(capture)), "symbolic links")


def test_bad_meta_json_and_non_utf8(tmp_path):
    capture = tmp_path / "capture"
    capture.mkdir()
    (capture / "meta.json").write_text("{not json")
    _one_clear_line(_cli("status", "--from", str(capture)), "meta.json", "not valid JSON")
    (capture / "meta.json").write_text('{"node": "n1"}')
    (capture / "iptables-save.txt").write_bytes(b"*nat\n\xff\xfe\n")
    _one_clear_line(_cli("status", "--from", str(capture)), "iptables-save.txt", "not UTF-8")


def test_gzip_that_is_not_a_tar(tmp_path):
    bad = tmp_path / "plain.tar.gz"
    bad.write_bytes(gzip.compress(b"just text, no tar header" * 40))
    _one_clear_line(_cli("status", "--from", str(bad)), "plain.tar.gz")


def test_collect_output_loads_back_equal(tmp_path):
    from kubectl_proxydoctor.collect.node import collect_node

    live = collect_node(node_name="n1")
    for name in ("live", "live.tar.gz"):
        _same(live, NodeSnapshot.load(live.save(tmp_path / name)))
