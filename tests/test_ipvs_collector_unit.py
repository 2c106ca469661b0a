"""The IPVS collector's decisions, with the kernel reads replaced: netlink first (rendered in the
stock `ipvsadm -Ln` format), ipvsadm as fallback, nothing touched without /proc/net/ip_vs."""

from pathlib import Path

import pytest

from kubectl_proxydoctor.collect import CollectContext
from kubectl_proxydoctor.collect import ipvs as collector
from kubectl_proxydoctor.collect import ipvs_netlink as netlink
from kubectl_proxydoctor.collect.node import FileRead, ToolResult
from kubectl_proxydoctor.errors import SourceUnavailable
from kubectl_proxydoctor.formats import ipvsadm

HEALTHY = Path(__file__).parent / "fixtures" / "ipvs" / "healthy"
PROC = (HEALTHY / "proc-net-ip_vs.txt").read_text()
LISTED = (HEALTHY / "ipvsadm.txt").read_text()


@pytest.fixture
def calls(monkeypatch):
    seen: list[list[str]] = []

    def run_tool(argv, netns=None, **kw):
        seen.append(argv)
        if argv[0] == "ipset":
            return ToolResult(stdout="create KUBE-CLUSTER-IP hash:ip,port family inet\n")
        return ToolResult(stdout=LISTED)

    monkeypatch.setattr(collector, "run_tool", run_tool)
    return seen


def _proc(monkeypatch, text):
    def read_files(paths, netns=None):
        return {p: FileRead(text=text) if text is not None else FileRead(errno=2, error="No such file")
                for p in paths}

    monkeypatch.setattr(collector, "read_files", read_files)


def test_netlink_table_is_stored_as_ipvsadm_text(monkeypatch, calls):
    _proc(monkeypatch, PROC)
    table = ipvsadm.parse(LISTED)
    monkeypatch.setattr(netlink, "read_live", lambda netns=None: table)
    ctx = CollectContext()
    collector.collect(ctx)
    assert ctx.sources == {"ipset": "ok", "proc-net-ip_vs": "ok", "ipvs": "ok"}
    assert ipvsadm.parse(ctx.files["ipvsadm.txt"]).services[4].persistent == 600
    assert ctx.files["ipvsadm.txt"].startswith("IP Virtual Server version 1.2.1 (size=4096)\n")
    assert collector.header_of("IP Virtual Server version 1.2.1 (size=1048576)\nProt") == ("1.2.1", 1048576)
    assert ctx.files["proc-net-ip_vs.txt"] == PROC
    assert ["ipvsadm", "-Ln", "--exact"] not in calls


def test_ipvsadm_fallback_when_netlink_fails(monkeypatch, calls):
    _proc(monkeypatch, PROC)

    def broken(netns=None):
        raise SourceUnavailable("IPVS netlink dump failed: boom")

    monkeypatch.setattr(netlink, "read_live", broken)
    ctx = CollectContext()
    collector.collect(ctx)
    assert ctx.sources["ipvs"] == "ok" and ctx.files["ipvsadm.txt"] == LISTED
    assert ["ipvsadm", "-Ln", "--exact"] in calls


def test_nothing_touches_ipvs_without_proc_net_ip_vs(monkeypatch, calls):
    _proc(monkeypatch, None)

    def must_not_run(netns=None):  # pragma: no cover - the assertion is that it is not called
        raise AssertionError("netlink must not be opened: it could load ip_vs")

    monkeypatch.setattr(netlink, "read_live", must_not_run)
    ctx = CollectContext()
    collector.collect(ctx)
    assert ctx.sources["ipvs"].startswith("unavailable: ")
    assert "ipvsadm.txt" not in ctx.files and "proc-net-ip_vs.txt" not in ctx.files
    assert calls == [["ipset", "save"]]
