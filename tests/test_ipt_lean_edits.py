"""Review of the lean iptables parse: a large-cluster node (no endpoint comments, so nearly every
rule stays text) edited with odd rules of kube-proxy's plain shapes gives, lean and full
(``parse(lean=False)``), the same view, layout facts, chain facts and structure findings
(foreign-rule, missing/unreferenced chain, uneven probabilities, stale layout), and broken copies
of it the same ParseError on the same line."""

# ruff: noqa: E501 (the edits below hold whole iptables-save lines)
from __future__ import annotations

import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from kubectl_proxydoctor.checks import CheckContext, load_checks, run_checks
from kubectl_proxydoctor.errors import ParseError
from kubectl_proxydoctor.modes.iptables import layout
from kubectl_proxydoctor.modes.iptables.parse import Ruleset, parse
from kubectl_proxydoctor.modes.iptables.view import hash_index, interpret_ruleset
from kubectl_proxydoctor.proxy_mode import dump_from_ruleset
from kubectl_proxydoctor.snapshot import NodeSnapshot

ROOT = Path(__file__).resolve().parents[1]
STRUCTURE = ["iptables-backend-leftover", "iptables-foreign-rule", "iptables-chain-structure",
             "iptables-probabilities", "iptables-stale-layout"]


def _node() -> tuple[str, str, list[str]]:
    """A generated large-cluster dump, a KUBE-SVC chain of it with three plain statistic jumps, and
    the KUBE-SEP chains it jumps to."""
    sys.path.insert(0, str(ROOT))
    from bench.generate import generate_cluster, iptables_save

    text = iptables_save(generate_cluster(400, 3, seed=3))
    lines = text.splitlines()
    for i, line in enumerate(lines):
        words = line.split()
        if (len(words) == 10 and words[1].startswith("KUBE-SVC-") and words[7] == "0.33333333349"
                and i and "-m recent" not in lines[i - 1]):
            svc = words[1]
            seps = [w.split()[-1] for w in lines[i:i + 3]]
            assert len(seps) == 3 and all(s.startswith("KUBE-SEP-") for s in seps)
            return text, svc, seps
    raise AssertionError("no plain KUBE-SVC chain with three endpoints")


TEXT, SVC, SEPS = _node()


def _insert(text: str, prefix: str, new: list[str]) -> str:
    """``new`` lines inserted before the first line starting with ``prefix``."""
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(prefix))
    lines[i:i] = new
    return "\n".join(lines) + "\n"


def _replace(text: str, prefix: str, new: str) -> str:
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(prefix))
    lines[i] = new
    return "\n".join(lines) + "\n"


def _drop(text: str, prefix: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith(prefix)) + "\n"


def _nat_end(text: str, new: list[str]) -> str:
    """``new`` lines at the end of the nat table."""
    end = text.index("COMMIT\n", text.index("*nat\n"))
    return text[:end] + "\n".join(new) + "\n" + text[end:]


def _declare(text: str, chain: str) -> str:
    return text.replace("*nat\n", f"*nat\n:{chain} - [0:0]\n", 1)


STAT = f"-A {SVC} -m statistic"
S1, S2, S3 = SEPS
EDITS = {
    "as generated": lambda t: t,
    "conditional plain jump": lambda t: _insert(t, STAT, [f"-A {SVC} -s 10.9.0.0/16 -j {S3}"]),
    "conditional masquerade": lambda t: _insert(t, STAT, [f"-A {SVC} -s 10.9.0.0/16 -j KUBE-MARK-MASQ"]),
    "statistic masquerade": lambda t: _insert(t, STAT, [
        f"-A {SVC} -m statistic --mode random --probability 0.5 -j KUBE-MARK-MASQ"]),
    "DNAT without destination": lambda t: _replace(t, f"-A {S1} -p ", f"-A {S1} -j DNAT"),
    "unusable DNAT first": lambda t: _insert(t, f"-A {S1} -p ", [f"-A {S1} -j DNAT"]),
    "DNAT without port": lambda t: _replace(t, f"-A {S1} -p ", f"-A {S1} -p tcp -m tcp -j DNAT --to-destination 10.9.0.1"),
    "DNAT to IPv6": lambda t: _replace(t, f"-A {S1} -p ", f"-A {S1} -p tcp -m tcp -j DNAT --to-destination [fd00::11]:8080"),
    "DNAT to a named port": lambda t: _replace(t, f"-A {S1} -p ", f"-A {S1} -p tcp -m tcp -j DNAT --to-destination 10.9.0.1:http"),
    "DNAT to a port range": lambda t: _replace(t, f"-A {S1} -p ", f"-A {S1} -p tcp -m tcp -j DNAT --to-destination 10.9.0.1:80-81"),
    "DNAT protocol mismatch": lambda t: _replace(t, f"-A {S1} -p ", f"-A {S1} -p tcp -m udp -j DNAT --to-destination 10.9.0.1:80"),
    "foreign plain rules": lambda t: _insert(_insert(t, STAT, [f"-A {SVC} -j ACCEPT"]), f"-A {S2} -p ", [
        f"-A {S2} -j RETURN", f"-A {S2} -s 1.2.3.4/32 -j DROP", f"-A {S2} -s 10.0.0.0/8 -j {S3}"]),
    "jump to a missing endpoint chain": lambda t: _insert(t, STAT, [
        f"-A {SVC} -m statistic --mode random --probability 0.25 -j KUBE-SEP-MISSINGMISSING1"]),
    "jump to a missing chain": lambda t: _insert(t, f"-A {S2} -p ", [f"-A {S2} -j KUBE-NOPE"]),
    "uneven": lambda t: t.replace(f"0.33333333349 -j {S1}", f"0.2 -j {S1}"),
    "probability nan": lambda t: t.replace(f"0.33333333349 -j {S1}", f"nan -j {S1}"),
    "probability with exponent": lambda t: t.replace(f"0.33333333349 -j {S1}", f"3.3333333349e-1 -j {S1}"),
    "tabs and double spaces": lambda t: t.replace(f"{STAT} --mode random --probability 0.33333333349",
                                                   f"-A {SVC}\t-m statistic  --mode random\t--probability 0.33333333349"),
    "statistic mode nth": lambda t: t.replace(f"--mode random --probability 0.33333333349 -j {S1}",
                                               f"--mode nth --every 3 --packet 0 -j {S1}"),
    "statistic in an endpoint chain": lambda t: _insert(t, f"-A {S1} -p ", [
        f"-A {S1} -m statistic --mode random --probability 0.5 -j KUBE-MARK-MASQ"]),
    "goto": lambda t: t.replace(f"-A {SVC} -j {S3}", f"-A {SVC} -g {S3}"),
    "DNAT in a service chain": lambda t: _insert(t, STAT, [
        f"-A {SVC} -p tcp -m tcp -j DNAT --to-destination 10.9.0.99:8080"]),
    "frontends of unknown chains": lambda t: _declare(_insert(t, "-A KUBE-SERVICES -d ", [
        "-A KUBE-SERVICES -j KUBE-FOO", f"-A KUBE-SERVICES -s 10.0.0.0/8 -j {SVC}",
        "-A KUBE-SERVICES -p tcp -m tcp -j DNAT --to-destination 1.2.3.4:80"]), "KUBE-FOO"),
    "node ports DNAT and an old chain": lambda t: _insert(t, "-A KUBE-NODEPORTS", [
        "-A KUBE-NODEPORTS -p tcp -m tcp -j DNAT --to-destination 1.2.3.4:80", "-A KUBE-NODEPORTS -j KUBE-XLB-FOO"]),
    "endpoint chain flushed": lambda t: _drop(t, f"-A {S1} "),
    "service chain flushed": lambda t: _drop(t, f"-A {SVC} "),
    "last jump to masquerade": lambda t: t.replace(f"-A {SVC} -j {S3}", f"-A {SVC} -j KUBE-MARK-MASQ"),
    "'!' as a source": lambda t: _insert(t, STAT, [f"-A {SVC} -s ! -j {S3}"]),
    "plain rules elsewhere": lambda t: _insert(_insert(t, "-A KUBE-POSTROUTING", [
        "-A KUBE-POSTROUTING -j ACCEPT", "-A KUBE-POSTROUTING -s 10.0.0.0/8 -j RETURN"]), "-A KUBE-MARK-MASQ", [
        "-A KUBE-MARK-MASQ -p tcp -m tcp -j DNAT --to-destination 1.1.1.1:1"]),
    "CNI hostPort chain": lambda t: _declare(_declare(_nat_end(t, [
        "-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
        "-A CNI-HOSTPORT-DNAT -p tcp -m multiport --dports 8080 -j CNI-DN-1",
        "-A CNI-DN-1 -s 10.128.0.5/32 -p tcp -m tcp --dport 8080 -j KUBE-MARK-MASQ",
        "-A CNI-DN-1 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.128.0.5:80"]), "CNI-HOSTPORT-DNAT"), "CNI-DN-1"),
    "interleaved and after a blank line": lambda t: _nat_end(t, ["", f"-A {S2} -j RETURN", f"-A {SVC} -j ACCEPT"]),
}


def _structure(rs: Ruleset) -> list[dict]:
    load_checks()
    view = interpret_ruleset(rs, "iptables-nft")
    ctx = CheckContext(snapshot=NodeSnapshot.from_files({}), views=[view], mode="iptables")
    return [asdict(f) for f in run_checks(ctx, only=STRUCTURE)]


def _meaning(rs: Ruleset) -> tuple:
    view = replace(interpret_ruleset(rs, "x"), raw=None)
    return (view, layout.unknown_rules(rs), layout.generation([rs]), asdict(dump_from_ruleset(rs, "x", "f")),
            {t: {k: [r.text for r in v] for k, v in rs.jumps_to(t).items()} for t in rs.tables})


@pytest.mark.parametrize("edit", list(EDITS), ids=list(EDITS))
def test_edited_large_cluster_node_lean_as_full(edit: str) -> None:
    text = EDITS[edit](TEXT)
    assert edit == "as generated" or text != TEXT
    lean, full = parse(text), parse(text, lean=False)
    assert sum(c.count - c.parsed for t in lean.tables.values() for c in t.chains.values()) > 1000
    # (repr: a probability "nan" is not equal to itself)
    assert repr(_structure(lean)) == repr(_structure(full))  # (read before anything builds Rules)
    assert repr(_meaning(lean)) == repr(_meaning(full))
    assert hash_index(lean) == hash_index(full)
    for name, table in full.tables.items():
        for chain_name, chain in table.chains.items():
            assert [(r.index, r.line, r.text, r.target) for r in lean.tables[name].chains[chain_name].rules] == [
                (r.index, r.line, r.text, r.target) for r in chain.rules]


BROKEN = {
    "truncated after the probability word": lambda t: _insert(t, STAT, [f"-A {SVC} -m statistic --mode random --probability"]),
    "truncated after -j": lambda t: _insert(t, STAT, [f"-A {SVC} -m statistic --mode random --probability 0.5 -j"]),
    "probability not a number": lambda t: t.replace(f"0.33333333349 -j {S1}", f"0.3x -j {S1}"),
    "plain rule of an undeclared chain": lambda t: _insert(t, STAT, [f"-A KUBE-SVC-UNDECLARED -j {S1}"]),
    "unbalanced quote": lambda t: _insert(t, f"-A {S1} -p ", [f'-A {S1} -p tcp -m tcp -j DNAT --to-destination "10.9.0.1:80']),
    "negation at the end": lambda t: _insert(t, STAT, [f"-A {SVC} -j {S1} !"]),
    "unexpected word": lambda t: _insert(t, STAT, [f"-A {SVC} -s 10.0.0.0/8 foo {S1}"]),
    "no COMMIT": lambda t: t[: t.rindex("COMMIT")],
    "cut mid-line": lambda t: t[: t.index(f"-A {S1} -p ") + 20],
}


@pytest.mark.parametrize("edit", list(BROKEN), ids=list(BROKEN))
def test_broken_large_cluster_node_same_error(edit: str) -> None:
    text = BROKEN[edit](TEXT)
    errors = []
    for lean in (True, False):
        with pytest.raises(ParseError) as e:
            parse(text, lean=lean)
        errors.append((str(e.value), e.value.line))
    assert errors[0] == errors[1]
    assert 0 < errors[0][1] <= text.count("\n") + 1


def _plain_chains_built(rs: Ruleset) -> list[str]:
    """The chains holding only plain rules (kept as text) whose Rules were built."""
    return [c.name for t in rs.tables.values() for c in t.chains.values()
            if c.count and not c.parsed and c._rules is not None]


@pytest.mark.parametrize(("edit", "code"), [("uneven", "uneven-probabilities"), ("CNI hostPort chain", "foreign-rule")])
def test_one_finding_on_a_large_node_builds_only_the_rules_it_shows(edit: str, code: str) -> None:
    """Naming the service of a finding (by chain hash), or the built-in chains a foreign chain is
    reached from, reads the rules' comments or targets, never builds the plain rules: one finding
    on a 10k-service node must not build its 300k Rules (~2 s and ~100 MB)."""
    lean = parse(EDITS[edit](TEXT))
    found = _structure(lean)
    assert [f["code"] for f in found] == [code]
    assert found[0]["service"] or code == "foreign-rule"
    assert _plain_chains_built(lean) == []
    assert hash_index(lean) == hash_index(parse(TEXT, lean=False))
    assert _plain_chains_built(lean) == []
