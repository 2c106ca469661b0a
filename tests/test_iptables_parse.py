"""iptables-save parsing: every option kube-proxy writes, unknown options kept, errors with lines."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubectl_proxydoctor.errors import ParseError
from kubectl_proxydoctor.modes.iptables import hashes
from kubectl_proxydoctor.modes.iptables.parse import parse

FIXTURES = Path(__file__).parent / "fixtures" / "iptables"


def one_rule(rule: str, table: str = "nat", chains: tuple[str, ...] = ("KUBE-X",)):
    decl = "\n".join(f":{c} - [0:0]" for c in chains)
    rs = parse(f"*{table}\n{decl}\n{rule}\nCOMMIT\n")
    return rs.rules(table, chains[0])[0]


def test_every_kube_proxy_option() -> None:
    r = one_rule('-A KUBE-X ! -s 10.244.0.0/16 -d 10.96.0.10/32 -i eth0 -o cni0 -p udp -m comment '
                 '--comment "a b \\"c\\"" -m udp --dport 53 -m statistic --mode random --probability '
                 '0.25000000000 -m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-ABC --mask '
                 '255.255.255.255 --rsource -m set --match-set KUBE-CLUSTER-IP dst,dst -m addrtype '
                 '! --dst-type LOCAL -m conntrack --ctstate NEW -m mark ! --mark 0x4000/0x4000 '
                 '-j DNAT --to-destination 10.244.0.5:53')
    assert (r.src, r.dst, r.in_iface, r.out_iface, r.proto, r.dport) == (
        "10.244.0.0/16", "10.96.0.10/32", "eth0", "cni0", "udp", "53")
    assert r.neg == {"src", "dst_type", "mark"}
    assert r.comment == 'a b "c"'
    assert (r.stat_mode, r.probability) == ("random", 0.25)
    assert (r.recent_mode, r.recent_seconds, r.recent_reap, r.recent_name, r.recent_side) == (
        "rcheck", 10800, True, "KUBE-SEP-ABC", "rsource")
    assert r.match_sets == [("KUBE-CLUSTER-IP", "dst,dst", False)]
    assert (r.dst_type, r.ctstate, r.mark) == ("LOCAL", "NEW", "0x4000/0x4000")
    assert (r.target, r.to_destination, r.goto) == ("DNAT", "10.244.0.5:53", False)
    assert r.matches == ("comment", "udp", "statistic", "recent", "set", "addrtype", "conntrack", "mark")
    assert r.unknown is None and r.index == 1 and r.line == 3


@pytest.mark.parametrize("rule,check", [
    ("-A KUBE-X -j MASQUERADE --random-fully", lambda r: r.random_fully and r.target == "MASQUERADE"),
    ("-A KUBE-X -j MARK --xor-mark 0x4000", lambda r: r.mark_op == ("xor-mark", "0x4000")),
    ("-A KUBE-X -j MARK --or-mark 0x4000", lambda r: r.mark_op == ("or-mark", "0x4000")),
    ("-A KUBE-X -j MARK --set-xmark 0x4000/0x0", lambda r: r.mark_op == ("set-xmark", "0x4000/0x0")),
    ("-A KUBE-X -j REJECT --reject-with icmp-port-unreachable",
     lambda r: r.reject_with == "icmp-port-unreachable"),
    ("-A KUBE-X -j DROP", lambda r: r.target == "DROP"),
    ("-A KUBE-X -j RETURN", lambda r: r.target == "RETURN"),
    ("-A KUBE-X -j ACCEPT", lambda r: r.target == "ACCEPT"),
    ("-A KUBE-X -g KUBE-Y", lambda r: r.goto and r.target == "KUBE-Y"),
    ("-A KUBE-X -m recent --set --name KUBE-SEP-A --mask 255.255.255.255 --rsource -j KUBE-Y",
     lambda r: r.recent_mode == "set"),
    ("-A KUBE-X -m comment --comment \"x\"", lambda r: r.target is None and r.comment == "x"),
    ("-A KUBE-X -p tcp -m multiport --dports 80,443 -j KUBE-Y", lambda r: r.dport == "80,443"),
])
def test_targets_and_target_options(rule: str, check) -> None:
    assert check(one_rule(rule, chains=("KUBE-X", "KUBE-Y")))


def test_unknown_options_kept_verbatim() -> None:
    r = one_rule("-A KUBE-X -m limit --limit 5/sec --limit-burst 10 -m physdev ! --physdev-is-in "
                 "-j LOG --log-prefix x --log-level 4")
    assert r.unknown == ["--limit", "5/sec", "--limit-burst", "10", "!", "--physdev-is-in"]
    assert r.target == "LOG" and r.target_args == ["--log-prefix", "x", "--log-level", "4"]
    assert r.matches == ("limit", "physdev")
    assert r.text.startswith("-A KUBE-X -m limit")


def test_chains_policies_counters_and_backend() -> None:
    text = (FIXTURES / "legacy-leftovers" / "iptables-legacy-save.txt").read_text()
    rs = parse(text, source="iptables-legacy-save.txt")
    assert rs.backend == "legacy" and rs.family == 4
    pre = rs.chain("nat", "PREROUTING")
    assert (pre.policy, pre.packets, pre.bytes, pre.builtin) == ("ACCEPT", 10, 600, True)
    assert not rs.chain("nat", "KUBE-SERVICES").builtin
    nft = parse((FIXTURES / "healthy" / "iptables-nft-save.txt").read_text())
    assert nft.backend == "nf_tables" and list(nft.tables) == ["mangle", "filter", "nat"]
    v6 = parse((FIXTURES / "healthy" / "ip6tables-nft-save.txt").read_text())
    assert v6.family == 6
    assert v6.rules("nat", "KUBE-SERVICES")[0].dst == "::1/128"
    assert parse("").empty


def test_escaped_quotes_in_cni_comment() -> None:
    rs = parse((FIXTURES / "third-party-rules" / "iptables-nft-save.txt").read_text())
    rule = rs.rules("nat", "CNI-HOSTPORT-DNAT")[0]
    assert rule.comment.startswith('dnat name: "cbr0" id: "5844e7')
    assert rule.dport == "8443" and rule.target == "CNI-DN-92edd5a420873c4595c0d"


@pytest.mark.parametrize("text,line,words", [
    ("-A KUBE-X -j DROP\n", 1, "outside a table"),
    ("*nat\n:KUBE-X - [0:0]\n-A KUBE-Y -j DROP\nCOMMIT\n", 3, "undeclared chain"),
    ("*nat\n:KUBE-X - [0:0]\n-A KUBE-X -s\nCOMMIT\n", 3, "needs a value"),
    ("*nat\n:KUBE-X - [0:0]\n-A KUBE-X -m comment --comment \"open\nCOMMIT\n", 3, "quote"),
    ("*nat\n:KUBE-X - [zz]\nCOMMIT\n", 2, "counters"),
    ("*nat\n:KUBE-X - [0:0]\n-A KUBE-X -m statistic --probability x -j DROP\nCOMMIT\n", 3, "probability"),
    ("*nat\n:KUBE-X - [0:0]\n-A KUBE-X stray -j DROP\nCOMMIT\n", 3, "unexpected word"),
    ("*nat\n:KUBE-X - [0:0]\n-I KUBE-X -j DROP\nCOMMIT\n", 3, "-A CHAIN"),
    ("*nat\n:KUBE-X - [0:0]\n-A KUBE-X -j DROP\n", 3, "no COMMIT"),
    ("*nat\n*filter\nCOMMIT\n", 2, "not COMMITted"),
    ("hello\n", 1, "not an iptables-save line"),
    ("*nat\n:KUBE-X - [0:0]\n-A KUBE-X ! -j DROP !\nCOMMIT\n", 3, "'!'"),
])
def test_malformed_input_names_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(ParseError) as exc:
        parse(text, source="dump.txt")
    assert exc.value.line == line
    assert words in str(exc.value) and str(exc.value).startswith(f"dump.txt:{line}:")


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40))
def test_comment_round_trip(comment: str) -> None:
    # iptables-save escapes backslashes and double quotes inside the quoted comment
    escaped = comment.replace("\\", "\\\\").replace('"', '\\"')
    r = one_rule(f'-A KUBE-X -m comment --comment "{escaped}" -j DROP')
    assert r.comment == comment and r.target == "DROP"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_never_crashes(text: str) -> None:
    try:
        parse(text)
    except ParseError:
        pass


def test_chain_hashes_match_kube_proxy() -> None:
    assert hashes.service_chain("default/web:http", "tcp") == "KUBE-SVC-CDGGSHYLG3RE2FKL"
    assert hashes.service_chain("default/web:http", "TCP", "KUBE-EXT-") == "KUBE-EXT-CDGGSHYLG3RE2FKL"
    sep = hashes.endpoint_chain("default/web:http", "tcp", "10.244.0.11", 8080)
    assert sep == "KUBE-SEP-QZSIC2ZS53EHPBVZ"
    assert hashes.service_chain("default/web-local:http", "tcp", "KUBE-SVL-") == "KUBE-SVL-V7ZMVOA2AOW6ATRL"
    assert hashes.port_name_string("ns", "svc", "") == "ns/svc"
    assert hashes.endpoint_string("fd00::1", 80) == "[fd00::1]:80"
