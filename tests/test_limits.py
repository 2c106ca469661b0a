"""Limits: captures bigger than memory allows, absurd sizes in tar headers and a 1 GB conntrack table
are refused (or bounded) with one clear line, without reading the oversized data."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import time
import tracemalloc
from pathlib import Path

import pytest

from kubectl_proxydoctor import snapshot
from kubectl_proxydoctor.collect import CollectContext
from kubectl_proxydoctor.collect import conntrack as conntrack_collector
from kubectl_proxydoctor.conntrack import parse_conntrack
from kubectl_proxydoctor.errors import BundleError
from kubectl_proxydoctor.snapshot import MAX_FILE_BYTES, NodeSnapshot
from tests.conftest import FIXTURES

HEALTHY = FIXTURES / "iptables" / "healthy"
MB = 1024 * 1024


def _capture_dir(tmp_path: Path) -> Path:
    """A real capture directory (tests/fixtures/iptables/healthy) to spoil."""
    capture = tmp_path / "capture"
    shutil.copytree(HEALTHY, capture)
    return capture


def _sparse(path: Path, size: int) -> None:
    with path.open("wb") as handle:
        handle.truncate(size)  # a hole: no disk blocks, no time


def test_a_sparse_600_mb_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    capture = _capture_dir(tmp_path)
    _sparse(capture / "conntrack.txt", 600 * MB)
    tracemalloc.start()
    try:
        with pytest.raises(BundleError) as exc:
            NodeSnapshot.load(capture)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(exc.value)
    assert "\n" not in message
    assert "conntrack.txt" in message and "too large" in message
    assert str(600 * MB) in message and str(MAX_FILE_BYTES) in message
    assert peak < 20 * MB, f"{peak} bytes allocated: the file was read"


def test_the_cli_refuses_the_oversized_capture_in_one_line(tmp_path: Path) -> None:
    capture = _capture_dir(tmp_path)
    _sparse(capture / "conntrack.txt", 600 * MB)
    run = subprocess.run([sys.executable, "-m", "kubectl_proxydoctor", "check", "--from", str(capture)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 3, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "too large" in lines[0] and "conntrack.txt" in lines[0], run.stderr
    assert "Traceback" not in run.stderr and run.stdout == ""


def test_files_adding_up_past_the_bundle_limit_are_refused(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Each file under the per-file limit, together over the capture limit (limits scaled down)."""
    capture = _capture_dir(tmp_path)
    total = sum(p.stat().st_size for p in capture.iterdir())
    monkeypatch.setattr(snapshot, "MAX_BUNDLE_BYTES", total - 1)
    with pytest.raises(BundleError, match=r"add up to more than \d+ bytes"):
        NodeSnapshot.load(capture)
    monkeypatch.setattr(snapshot, "MAX_BUNDLE_BYTES", total)
    assert NodeSnapshot.load(capture).has("iptables-save.txt")


def _header_only_tar(size: int, fmt: int, gzip: bool = False) -> bytes:
    """A tar whose only member claims ``size`` bytes and carries none."""
    info = tarfile.TarInfo("capture/conntrack.txt")
    info.size = size
    raw = info.tobuf(format=fmt) + b"\0" * 1024
    if not gzip:
        return raw
    import gzip as gz

    return gz.compress(raw)


@pytest.mark.parametrize("size, fmt, gzip, what", [
    (2**60, tarfile.GNU_FORMAT, False, "too large"),  # base-256 size field
    (10**30, tarfile.PAX_FORMAT, True, "too large"),  # pax "size" record
    (MAX_FILE_BYTES + 1, tarfile.USTAR_FORMAT, True, "too large"),  # just over the limit
    (-5, tarfile.GNU_FORMAT, False, "invalid size (-5)"),  # negative base-256 size
])
def test_absurd_sizes_in_tar_headers_are_refused(tmp_path: Path, size: int, fmt: int, gzip: bool,
                                                 what: str) -> None:
    bundle = tmp_path / ("node.tar.gz" if gzip else "node.tar")
    bundle.write_bytes(_header_only_tar(size, fmt, gzip))
    started = time.monotonic()
    with pytest.raises(BundleError) as exc:
        NodeSnapshot.load(bundle)
    assert time.monotonic() - started < 2
    message = str(exc.value)
    assert what in message and "capture/conntrack.txt" in message and "\n" not in message


def test_absurd_size_in_a_streamed_bundle_is_refused() -> None:
    """The same check on a capture streamed from a collector pod (held in memory)."""
    with pytest.raises(BundleError, match="too large"):
        snapshot.snapshot_from_tar_bytes(_header_only_tar(2**40, tarfile.GNU_FORMAT, gzip=True), "pod")


def test_a_member_smaller_than_its_header_says_is_truncated(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("capture/kernel.txt")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"6.1.0\n"))
    data = buf.getvalue()
    header = bytearray(data[:512])
    bigger = tarfile.TarInfo("capture/kernel.txt")
    bigger.size = 10 * MB  # the header now claims 10 MB that the archive does not hold
    header[:512] = bigger.tobuf(format=tarfile.USTAR_FORMAT)
    (tmp_path / "node.tar").write_bytes(bytes(header) + data[512:1024])
    with pytest.raises(BundleError, match="truncated"):
        NodeSnapshot.load(tmp_path / "node.tar")


# -- a 1 GB conntrack table ---------------------------------------------------------------------------

ENTRY = ("ipv4     2 tcp      6 431999 ESTABLISHED src=10.244.0.5 dst=10.96.100.10 sport=40001 dport=80 "
         "src=10.244.0.11 dst=10.244.0.5 sport=8080 dport=40001 [ASSURED] mark=0 use=1")
GB = 1024 * MB


def _fake_conntrack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int) -> Path:
    """A `conntrack` on PATH that lists a ``size``-byte table; returns the file it writes at the end."""
    if shutil.which("yes") is None or shutil.which("head") is None:
        pytest.skip("needs yes and head")
    fake = tmp_path / "bin"
    fake.mkdir()
    done = tmp_path / "listed-everything"
    script = fake / "conntrack"
    script.write_text(f"#!/bin/sh\nyes '{ENTRY}' | head -c {size}\necho done > {done}\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    return done


@pytest.fixture
def huge_conntrack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A 1 GB conntrack table."""
    return _fake_conntrack(tmp_path, monkeypatch, GB)


def test_a_1_gb_conntrack_table_is_cut_at_the_bound_and_says_truncated(huge_conntrack: Path) -> None:
    ctx = CollectContext()
    started = time.monotonic()
    conntrack_collector.collect(ctx)
    elapsed = time.monotonic() - started
    text = ctx.files["conntrack.txt"]
    bound = conntrack_collector.MAX_BYTES
    assert bound - len(ENTRY) - 1 <= len(text.encode()) <= bound
    assert text.endswith("\n") and all(line == ENTRY for line in text[-10 * len(ENTRY):].splitlines()[1:])
    source = ctx.sources["conntrack.txt"]
    assert source.startswith("ok (truncated") and str(bound) in source
    assert ctx.meta["conntrack_truncated"] is True
    assert elapsed < 30
    time.sleep(0.2)
    assert not huge_conntrack.exists(), "the listing ran to its end: the collector did not stop it"
    assert len(parse_conntrack(text[-100 * len(ENTRY):].split("\n", 1)[1])) >= 90


def test_a_conntrack_table_under_the_bound_is_kept_whole(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    size = (len(ENTRY) + 1) * 1000
    done = _fake_conntrack(tmp_path, monkeypatch, size)
    ctx = CollectContext()
    conntrack_collector.collect(ctx, max_bytes=size)
    assert done.exists() and ctx.sources["conntrack.txt"] == "ok" and "conntrack_truncated" not in ctx.meta
    text = ctx.files["conntrack.txt"]
    assert len(text) == size and len(parse_conntrack(text)) == 1000
