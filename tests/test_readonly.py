"""Collection writes nothing: rules, tables and the legacy table list are the same before and after."""

from __future__ import annotations

import re
import shutil

import pytest

from kubectl_proxydoctor.collect.node import collect_node
from tests.conftest import FIXTURES, ns_run

pytestmark = pytest.mark.integration


def _no_header(text: str) -> str:
    """Save output without its dated header and packet counters (probing 127.0.0.1 counts packets)."""
    lines = (line for line in text.splitlines() if not line.startswith("# "))
    return "\n".join(re.sub(r"\[\d+:\d+\]", "[]", line) for line in lines)


def _nft(text: str) -> str:
    """nft ruleset without what time and traffic change: counters, set element expiry."""
    text = re.sub(r"counter packets \d+ bytes \d+", "counter", text)
    return re.sub(r" expires [0-9hms]+", "", text)


def state(ns: str) -> dict[str, str]:
    """Everything collection could change by mistake, read with the stock tools."""
    out = {}
    for tool in ("iptables-nft-save", "ip6tables-nft-save", "iptables-legacy-save", "ip6tables-legacy-save"):
        out[tool] = _no_header(ns_run(ns, tool).stdout)
    out["nft list ruleset"] = _nft(ns_run(ns, "nft", "list", "ruleset").stdout)
    out["ip_tables_names"] = ns_run(ns, "cat", "/proc/net/ip_tables_names").stdout
    out["ip6_tables_names"] = ns_run(ns, "cat", "/proc/net/ip6_tables_names").stdout
    out["links"] = ns_run(ns, "ip", "-o", "addr", "show").stdout
    return out


@pytest.fixture(autouse=True)
def _tools():
    for tool in ("iptables-nft-restore", "iptables-legacy-restore", "nft"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")


def test_collect_changes_nothing_in_an_empty_namespace(netns):
    ns = netns("pd-col-")
    before = state(ns)
    assert before["ip_tables_names"] == "" and before["nft list ruleset"] == ""
    collect_node(netns=ns, with_conntrack=True)
    # iptables-legacy-save ran (the legacy module is loaded) and created no table
    assert state(ns) == before


def test_collect_changes_nothing_with_rules_in_every_backend(netns):
    ns = netns("pd-col-")
    fix = FIXTURES / "iptables" / "legacy-leftovers"
    ns_run(ns, "iptables-nft-restore", input=(fix / "iptables-nft-save.txt").read_text())
    ns_run(ns, "ip6tables-nft-restore", input=(fix / "ip6tables-nft-save.txt").read_text())
    ns_run(ns, "iptables-legacy-restore", input=(fix / "iptables-legacy-save.txt").read_text())
    ns_run(ns, "nft", "-f", str(FIXTURES / "nftables" / "healthy" / "nft-ruleset.txt"))
    before = state(ns)
    assert "KUBE-SERVICES" in before["iptables-legacy-save"] and "kube-proxy" in before["nft list ruleset"]
    snap = collect_node(netns=ns, with_conntrack=True)
    assert snap.text("iptables-nft-save.txt")
    assert state(ns) == before
