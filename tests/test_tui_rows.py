"""The TUI's presentation logic without Textual: rows, filter/sort model, widths, packet input,
rule highlighting and the header."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubectl_proxydoctor.errors import ParseError
from kubectl_proxydoctor.model import Finding, ServicePortName
from kubectl_proxydoctor.report import NodeReport, ServiceStatus
from kubectl_proxydoctor.tui.highlight import highlight_rules
from kubectl_proxydoctor.tui.packet import packet_text_for, parse_packet
from kubectl_proxydoctor.tui.rows import COLUMNS, TableModel, build_rows, column_widths, fit
from kubectl_proxydoctor.tui.summary import header_text, kube_proxy_health
from tests.test_tui_fixture import WEB, stale_endpoint_report


def _report(names: list[tuple[str, str, str]], statuses: list[str] | None = None) -> NodeReport:
    services = []
    for i, (ns, name, port) in enumerate(names):
        status = statuses[i] if statuses else "ok"
        services.append(ServiceStatus(ServicePortName(ns, name, port, "TCP"), status, "ClusterIP",
                                      [f"10.96.0.{i % 250}:80"], ["10.244.0.1:80"], ["10.244.0.1:80"]))
    return NodeReport(node="n", mode="iptables", services=services)


def test_rows_take_severity_from_findings_then_status() -> None:
    names = [("a", "x", "http"), ("a", "y", "http"), ("a", "z", "http")]
    report = _report(names, ["ok", "not-expected", "ok"])
    report.findings = [
        Finding(code="uneven", severity="warning", message="", service="a/x", port="http", protocol="TCP"),
        Finding(code="bad", severity="error", message="", service="a/x", port="http", protocol=None),
        Finding(code="udp-only", severity="error", message="", service="a/z", port="http", protocol="UDP"),
    ]
    x, y, z = build_rows(report)
    assert x.severity == "error" and [f.code for f in x.findings] == ["uneven", "bad"]
    assert y.severity == "warning" and not y.findings
    assert z.severity is None  # a UDP finding does not colour the TCP port
    assert "uneven" in x.haystack and "bad" in x.haystack


words = st.text(alphabet="abcdxy-", min_size=1, max_size=4)


@settings(max_examples=60, deadline=None)
@given(
    names=st.lists(st.tuples(words, words, words), min_size=0, max_size=40),
    queries=st.lists(st.text(alphabet="abcdxy- /", max_size=6), max_size=6),
    sort=st.one_of(st.none(), st.integers(0, len(COLUMNS) - 1)),
)
def test_model_filter_equals_brute_force(names, queries, sort) -> None:
    """Incremental filtering (typing narrows the shown rows) gives what a full filter gives."""
    rows = build_rows(_report(names))
    model = TableModel(rows)
    if sort is not None:
        model.sort_by(sort)
    typed = ""
    for q in queries:
        for step in (typed + q, q):  # typing on, then replacing the query
            model.set_query(step)
            terms = step.lower().split()
            expected = {i for i, r in enumerate(rows) if all(t in r.haystack for t in terms)}
            assert set(model.view) == expected
            assert len(model.view) == len(set(model.view))
        typed += q
    # the view stays in the sort order
    if sort is not None and model.view:
        keys = [rows[i].cells[sort] for i in model.view]
        if COLUMNS[sort].key not in ("status", "endpoints"):
            assert keys == sorted(keys)


def test_sort_toggles_direction_and_keeps_filter() -> None:
    rows = build_rows(stale_endpoint_report())
    model = TableModel(rows)
    model.set_query("default")
    model.sort_by(6)
    assert model.row(0).key == WEB.key and not model.reverse
    ok = [model.row(i).cells[:3] for i in range(1, len(model))]
    assert ok == sorted(ok)  # ties stay in namespace/name/port order
    model.sort_by(6)
    assert model.reverse and model.row(len(model) - 1).key == WEB.key
    assert all(model.row(i).cells[0] == "default" for i in range(len(model)))
    assert len(model) == 14


@pytest.mark.parametrize("width", [30, 40, 50, 60, 78, 80, 120, 200])
def test_column_widths_fit(width: int) -> None:
    rows = build_rows(stale_endpoint_report())
    widths = column_widths(rows, width)
    shown = [w for w in widths if w]
    used = sum(shown) + len(shown) - 1
    assert used <= max(width, 42)  # 42: namespace, name, port, counts, status at their minimum
    assert widths[-1] >= len("drift")  # the status is always there
    if width >= 60:
        assert used == width and all(widths)  # every column, the whole width
    if width <= 50:
        assert widths[4] == 0  # frontends go first


def test_fit() -> None:
    assert fit("abc", 5) == "abc  "
    assert fit("abcdef", 4) == "abc…"
    assert fit("abc", 0) == ""
    assert fit("10.96.100.18:80 +1", 17) == "10.96.100.18:… +1"  # the count of more frontends stays
    assert fit("10.96.100.18:80 +12", 12) == "10.96.1… +12"
    assert fit("a +1", 3) == "a …"  # too narrow to keep the count


@pytest.mark.parametrize(
    ("text", "dst", "port", "proto", "src"),
    [
        ("10.96.0.10:53/udp", "10.96.0.10", 53, "UDP", None),
        ("10.96.0.1:443", "10.96.0.1", 443, "TCP", None),
        ("[fd00::10]:80/SCTP", "fd00::10", 80, "SCTP", None),
        ("10.96.0.1:443 from 10.244.1.5", "10.96.0.1", 443, "TCP", "10.244.1.5"),
    ],
)
def test_parse_packet(text, dst, port, proto, src) -> None:
    packet = parse_packet(text)
    assert (packet.dst, packet.port, packet.protocol, packet.src) == (dst, port, proto, src)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "enter a destination"),
        ("10.96.0.1", "expected IP:PORT"),
        ("10.96.0.1:0", "1 to 65535"),
        ("10.96.0.1:http", "1 to 65535"),
        ("10.96.0.300:80", "not an IP address"),
        ("10.96.0.1:80/icmp", "unknown protocol"),
        ("10.96.0.1:80 to 1.2.3.4", "expected IP:PORT"),
        ("10.96.0.1:80 from nowhere", "source 'nowhere'"),
    ],
)
def test_parse_packet_errors(text, message) -> None:
    with pytest.raises(ParseError, match=message):
        parse_packet(text)


def test_packet_text_for_frontends() -> None:
    assert packet_text_for(["nodeport:30080", "10.96.100.11:8080"], "TCP") == "10.96.100.11:8080/tcp"
    assert packet_text_for(["10.96.100.16:53"], "UDP") == "10.96.100.16:53/udp"
    assert packet_text_for(["nodeport:30080"], "TCP") == ""


def test_highlight_marks_chains_targets_and_addresses() -> None:
    line = ('-A KUBE-SVC-CDGGSHYLG3RE2FKL -m comment --comment "default/web:http -> 10.244.0.12:8080" '
            "-j KUBE-SEP-GFGX6LKJVO6TG6Y4")
    text = highlight_rules([line])
    styled = {text.plain[s.start:s.end]: str(s.style) for s in text.spans}
    assert styled["KUBE-SVC-CDGGSHYLG3RE2FKL"] == "bold cyan"
    assert styled['"default/web:http -> 10.244.0.12:8080"'] == "green"
    assert styled["-A"] == "bold magenta"
    assert "-j KUBE-SEP-GFGX6LKJVO6TG6Y4" in styled or "KUBE-SEP-GFGX6LKJVO6TG6Y4" in styled
    nft = highlight_rules(["ip daddr 10.96.100.10 tcp dport 80 goto service-ULMVA6XW-default/web/tcp/http"])
    nft_styled = {nft.plain[s.start:s.end] for s in nft.spans}
    assert "service-ULMVA6XW-default/web/tcp/http" in nft_styled and "10.96.100.10" in nft_styled


def test_header_counts_and_health() -> None:
    report = stale_endpoint_report()
    text = header_text(report, "capture").plain
    assert "node pdnode1" in text and "mode iptables" in text and "kernel 6.18.44-fc-v595" in text
    assert "16 ports  15 ok  1 drift" in text and "1 error 1 warning 1 info" in text
    assert "kube-proxy not running" in text
    assert kube_proxy_health(report) == ("not running", "warning")


def test_health_follows_the_checks_findings() -> None:
    from kubectl_proxydoctor.snapshot import NodeSnapshot

    def health(findings=(), files=None):
        snapshot = NodeSnapshot.from_files(files or {})
        report = NodeReport(node="n", mode="iptables", findings=list(findings), snapshot=snapshot)
        return kube_proxy_health(report)

    failing = Finding(code="sync-failing", severity="error", message="iptables-restore fails")
    recovered = Finding(code="restore-failures", severity="info", message="recovered")
    assert health([recovered, failing]) == ("sync failing", "error")
    assert health([recovered]) == ("recovered", "info")
    assert health(files={"kube-proxy-healthz.json": "{}"}) == ("healthy", None)
    assert health(files={"kube-proxy-metrics.txt": ""}) == ("running", None)
    assert health() == ("unknown", "warning")
