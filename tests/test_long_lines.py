"""A 6.4 MB comment in a nat rule (issue 16 item 5): parsed in linear time, and the finding about
it shows a bounded excerpt with a note of what was cut, not the whole line.

Timing bounds are relative to a same-size dump of ordinary lines, never absolute."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from rich.console import Console

from kubectl_proxydoctor.analysis import analyse
from kubectl_proxydoctor.clip import EVIDENCE_LIMIT, clip
from kubectl_proxydoctor.cluster import ClusterState
from kubectl_proxydoctor.errors import ParseError
from kubectl_proxydoctor.modes.iptables.parse import parse
from kubectl_proxydoctor.proxy_mode import parse_iptables_save
from kubectl_proxydoctor.render.report_text import render_check
from kubectl_proxydoctor.snapshot import NodeSnapshot

HEALTHY = Path(__file__).parent / "fixtures" / "iptables" / "healthy"
COMMENT = 6_400_000
ANCHOR = '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports'
FACTOR = 20


def _with_rule(dump: str, rule: str) -> str:
    assert ANCHOR in dump
    return dump.replace(ANCHOR, rule + "\n" + ANCHOR, 1)


def _long_dump(dump: str) -> str:
    comment = "x" * COMMENT
    return _with_rule(dump, f'-A KUBE-SERVICES -s 10.9.9.9/32 -m comment --comment "{comment}" -j ACCEPT')


def _ordinary_dump(dump: str, size: int) -> str:
    """The same dump padded with ordinary rules (a host firewall's INPUT accepts) to ``size``."""
    rules, n, total = [], 0, len(dump)
    while total < size:
        rules.append(f"-A INPUT -s 10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}/32 -p tcp -m tcp "
                     f"--dport {n % 60000 + 1} -j ACCEPT\n")
        total += len(rules[-1])
        n += 1
    head, _, tail = dump.partition(":KUBE-EXTERNAL-SERVICES - [0:0]\n")
    return head + ":KUBE-EXTERNAL-SERVICES - [0:0]\n" + tail.replace(
        "COMMIT\n", "".join(rules) + "COMMIT\n", 1)


def _best(fn, *args) -> float:
    times = []
    for _ in range(2):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def _snapshot(dump: str) -> NodeSnapshot:
    snap = NodeSnapshot.load(HEALTHY)
    for name in ("iptables-save.txt", "iptables-nft-save.txt"):
        snap.files[name] = dump
    return snap


def _check_text(snap: NodeSnapshot) -> str:
    report = analyse(snap, ClusterState.from_json_text(snap.text("api.json")), snap.node)
    console = Console(record=True, width=120, file=io.StringIO())
    render_check(report, console)
    return console.export_text()


def test_a_6_4_mb_comment_parses_in_linear_time():
    dump = (HEALTHY / "iptables-nft-save.txt").read_text()
    long = _long_dump(dump)
    ordinary = _ordinary_dump(dump, len(long))
    assert abs(len(ordinary) - len(long)) < 1000
    assert _best(parse, long) <= FACTOR * _best(parse, ordinary) + 0.1
    assert _best(parse_iptables_save, long) <= FACTOR * _best(parse_iptables_save, ordinary) + 0.1
    (rule,) = [r for r in parse(long).rules("nat", "KUBE-SERVICES") if r.src == "10.9.9.9/32"]
    assert len(rule.comment) == COMMENT  # parsed whole, only the report cuts it


def test_check_on_a_6_4_mb_comment_is_quick_and_its_finding_is_short():
    dump = (HEALTHY / "iptables-nft-save.txt").read_text()
    long_snap = _snapshot(_long_dump(dump))
    ordinary_snap = _snapshot(_ordinary_dump(dump, len(long_snap.text("iptables-nft-save.txt") or "")))
    t_long, t_ordinary = _best(_check_text, long_snap), _best(_check_text, ordinary_snap)
    assert t_long <= FACTOR * t_ordinary + 0.2
    report = analyse(long_snap, ClusterState.from_json_text(long_snap.text("api.json")), long_snap.node)
    (finding,) = [f for f in report.findings if f.code == "foreign-rule"]
    assert all(len(e) <= EVIDENCE_LIMIT + 40 for e in finding.evidence)
    rule = next(line for line in (long_snap.text("iptables-nft-save.txt") or "").splitlines()
                if line.startswith("-A KUBE-SERVICES -s 10.9.9.9/32"))
    assert finding.evidence == [rule[:EVIDENCE_LIMIT] + f"... ({len(rule) - EVIDENCE_LIMIT} bytes cut)"]
    assert len(finding.message) < 1200 and "bytes cut" in finding.message
    assert "confirm it is rule" in finding.fix and len(finding.fix) < 1000  # no 6.4 MB command
    text = _check_text(long_snap)
    assert len(text) < 20_000 and "bytes cut" in text.replace("\n", "")


def test_clip_notes_what_was_cut():
    assert clip("short") == "short"
    assert clip("é" * 600, 512) == "é" * 512 + "... (176 bytes cut)"  # counted in UTF-8 bytes


def test_a_parse_error_names_a_huge_word_without_printing_it():
    try:
        parse(f"*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING {'y' * COMMENT}\nCOMMIT\n")
    except ParseError as e:
        assert len(str(e)) < 400 and "bytes cut" in str(e)
    else:
        raise AssertionError("a bare word is not an iptables-save rule")


def test_trace_and_svc_through_a_rule_with_a_6_4_mb_comment_print_an_excerpt(tmp_path, capsys):
    """The packet path shows kube-proxy's own rule (given a huge second comment) cut, with the note."""
    from kubectl_proxydoctor.cli import main

    capture = tmp_path / "capture"
    capture.mkdir()
    for path in HEALTHY.iterdir():
        (capture / path.name).write_bytes(path.read_bytes())
    rule = ('-A KUBE-SVC-2262UYG6EQJDKK3I ! -s 10.244.0.0/16 -d 10.96.100.11/32 -p tcp -m comment --comment '
            '"default/web-np:http cluster IP" -m tcp --dport 8080 -j KUBE-MARK-MASQ')
    huge = rule.replace(" -j KUBE-MARK-MASQ", f' -m comment --comment "{"x" * COMMENT}" -j KUBE-MARK-MASQ')
    for name in ("iptables-save.txt", "iptables-nft-save.txt"):
        text = (HEALTHY / name).read_text()
        assert rule in text
        (capture / name).write_text(text.replace(rule, huge))
    for argv in (["trace", "--dst", "10.96.100.11:8080"], ["svc", "web-np", "-n", "default", "--all"]):
        with pytest.raises(SystemExit):
            main([*argv, "--from", str(capture)])
        out = capsys.readouterr().out
        assert "bytescut)" in "".join(out.replace("│", "").split()), argv
        assert len(out) < 60_000, argv
    with pytest.raises(SystemExit):  # the compact svc prints each rule on one line, cut at the width
        main(["svc", "web-np", "-n", "default", "--from", str(capture)])
    out = capsys.readouterr().out
    assert len(out) < 20_000 and "x" * 200 not in out
