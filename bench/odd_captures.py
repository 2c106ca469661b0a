"""Edited copies of the healthy iptables capture for bench/compare_outputs.py: large-cluster style
(no comments on endpoint rules, so kube-proxy's plain rules are what the lean parse keeps as text),
each with odd rules of those plain shapes (conditional jumps, unusable DNATs, foreign rules, missing
chains, uneven or odd probabilities, goto, tabs, interleaving...). Written for the review of issue 18's
lean iptables parse: main and the branch must print the same outputs on every one.

    .venv/bin/python bench/odd_captures.py /tmp/odd
    .venv/bin/python bench/compare_outputs.py --base MAIN_TREE --extra /tmp/odd/*
"""

# ruff: noqa: E501 (the edits below hold whole iptables-save lines)
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "iptables" / "healthy"
COMMENT = re.compile(r' -m comment --comment "[^"]*"')

SVC = "KUBE-SVC-CDGGSHYLG3RE2FKL"  # default/web:http, 3 endpoints
SEP1, SEP2, SEP3 = "KUBE-SEP-QZSIC2ZS53EHPBVZ", "KUBE-SEP-GFGX6LKJVO6TG6Y4", "KUBE-SEP-R6TGM7Q5Z6CPQGKZ"
FW, EXT = "KUBE-FW-JSLCNGWSGB5JPS5Q", "KUBE-EXT-JSLCNGWSGB5JPS5Q"


def strip(text: str, chains: tuple[str, ...] = ("-A KUBE-SEP-",)) -> str:
    out = []
    for line in text.splitlines():
        if line.startswith(chains) or (line.startswith(("-A KUBE-SVC-", "-A KUBE-SVL-")) and " -> " in line):
            line = COMMENT.sub("", line)
        out.append(line)
    return "\n".join(out) + "\n"


def lines_of(text: str) -> list[str]:
    return text.splitlines()


def insert_after_first(text: str, prefix: str, new: str | list[str], before: bool = False) -> str:
    ls = lines_of(text)
    i = next(k for k, line in enumerate(ls) if line.startswith(prefix))
    ls[i + (0 if before else 1):i + (0 if before else 1)] = new if isinstance(new, list) else [new]
    return "\n".join(ls) + "\n"


def replace_line(text: str, prefix: str, new: str) -> str:
    ls = lines_of(text)
    i = next(k for k, line in enumerate(ls) if line.startswith(prefix))
    ls[i] = new
    return "\n".join(ls) + "\n"


def declare(text: str, chain: str) -> str:
    return text.replace("*nat\n", f"*nat\n:{chain} - [0:0]\n", 1)


def nat_end(text: str, new: list[str]) -> str:
    head, _, tail = text.partition("*nat\n")
    body, _, rest = tail.partition("COMMIT\n")
    return head + "*nat\n" + body + "\n".join(new) + "\nCOMMIT\n" + rest


M = {
    "base": lambda t: t,
    "src-jump": lambda t: insert_after_first(t, f"-A {SVC} -m statistic", f"-A {SVC} -s 10.9.0.0/16 -j {SEP3}", before=True),
    "src-jump-masq": lambda t: insert_after_first(t, f"-A {SVC} -m statistic", f"-A {SVC} -s 10.9.0.0/16 -j KUBE-MARK-MASQ", before=True),
    "dnat-bare": lambda t: replace_line(t, f"-A {SEP1} -p tcp", f"-A {SEP1} -j DNAT"),
    "dnat-bare-then-good": lambda t: insert_after_first(t, f"-A {SEP1} -p tcp", f"-A {SEP1} -j DNAT", before=True),
    "stat-masq": lambda t: insert_after_first(t, f"-A {SVC} -m statistic", f"-A {SVC} -m statistic --mode random --probability 0.5 -j KUBE-MARK-MASQ", before=True),
    "proto-mismatch": lambda t: replace_line(t, f"-A {SEP1} -p tcp", f"-A {SEP1} -p tcp -m udp -j DNAT --to-destination 10.244.0.11:8080"),
    "dnat-noport": lambda t: replace_line(t, f"-A {SEP1} -p tcp", f"-A {SEP1} -p tcp -m tcp -j DNAT --to-destination 10.244.0.11"),
    "dnat-ipv6": lambda t: replace_line(t, f"-A {SEP1} -p tcp", f"-A {SEP1} -p tcp -m tcp -j DNAT --to-destination [fd00::11]:8080"),
    "dnat-badport": lambda t: replace_line(t, f"-A {SEP1} -p tcp", f"-A {SEP1} -p tcp -m tcp -j DNAT --to-destination 10.244.0.11:http"),
    "dnat-range-port": lambda t: replace_line(t, f"-A {SEP1} -p tcp", f"-A {SEP1} -p tcp -m tcp -j DNAT --to-destination 10.244.0.11:8080-8081"),
    "dnat-garbage-ip": lambda t: replace_line(t, f"-A {SEP1} -p tcp", f"-A {SEP1} -p tcp -m tcp -j DNAT --to-destination foo:8080"),
    "foreign-plain": lambda t: insert_after_first(insert_after_first(t, f"-A {SVC} -m statistic", f"-A {SVC} -j ACCEPT", before=True), f"-A {SEP2} -p tcp", [f"-A {SEP2} -j RETURN", f"-A {SEP2} -s 1.2.3.4/32 -j DROP"], before=True),
    "missing-chain": lambda t: insert_after_first(t, f"-A {SVC} -m statistic", f"-A {SVC} -m statistic --mode random --probability 0.25 -j KUBE-SEP-MISSINGMISSING1", before=True),
    "missing-chain-jump": lambda t: insert_after_first(t, f"-A {SEP2} -p tcp", f"-A {SEP2} -j KUBE-NOPE", before=True),
    "uneven": lambda t: t.replace("--probability 0.33333333349 -j " + SEP1, "--probability 0.2 -j " + SEP1),
    "uneven-nan": lambda t: t.replace("--probability 0.33333333349 -j " + SEP1, "--probability nan -j " + SEP1),
    "uneven-exp": lambda t: t.replace("--probability 0.33333333349 -j " + SEP1, "--probability 3.3333333349e-1 -j " + SEP1),
    "tabs": lambda t: t.replace(f"-A {SVC} -m statistic --mode random --probability 0.33333333349", f"-A {SVC}\t-m statistic  --mode random\t--probability 0.33333333349"),
    "stat-nth": lambda t: t.replace("--mode random --probability 0.33333333349", "--mode nth --every 3 --packet 0"),
    "stat-in-sep": lambda t: insert_after_first(t, f"-A {SEP1} -p tcp", f"-A {SEP1} -m statistic --mode random --probability 0.5 -j KUBE-MARK-MASQ", before=True),
    "goto": lambda t: t.replace(f"-A {SVC} -j {SEP3}", f"-A {SVC} -g {SEP3}"),
    "svc-dnat": lambda t: insert_after_first(t, f"-A {SVC} -m statistic", f"-A {SVC} -p tcp -m tcp -j DNAT --to-destination 10.244.0.99:8080", before=True),
    "services-unknown": lambda t: declare(insert_after_first(t, "-A KUBE-SERVICES -d 10.96.100.10/32", ["-A KUBE-SERVICES -j KUBE-FOO", "-A KUBE-SERVICES -s 10.0.0.0/8 -j KUBE-SVC-CDGGSHYLG3RE2FKL"], before=True), "KUBE-FOO"),
    "nodeports-dnat": lambda t: insert_after_first(t, "-A KUBE-NODEPORTS", ["-A KUBE-NODEPORTS -p tcp -m tcp -j DNAT --to-destination 1.2.3.4:80", "-A KUBE-NODEPORTS -j KUBE-XLB-FOO"], before=True),
    "fw-plain": lambda t: strip(t, ("-A KUBE-SEP-", "-A KUBE-FW-", "-A KUBE-EXT-")),
    "fw-plain-neg": lambda t: strip(t.replace(f"-A {FW} -s 172.30.0.0/24", f"-A {FW} ! -s 172.30.0.0/24"), ("-A KUBE-SEP-", "-A KUBE-FW-", "-A KUBE-EXT-")),
    "interleaved": lambda t: nat_end(t.replace(f"-A {SEP2} -p tcp -m tcp -j DNAT --to-destination 10.244.0.12:8080\n", ""), [f"-A {SEP2} -p tcp -m tcp -j DNAT --to-destination 10.244.0.12:8080", f"-A {SVC} -j ACCEPT"]),
    "sep-self-masq": lambda t: insert_after_first(t, f"-A {SEP1} -p tcp", f"-A {SEP1} -s 10.0.0.0/8 -j {SEP2}", before=True),
    "sep-empty": lambda t: "\n".join(line for line in lines_of(t) if not line.startswith(f"-A {SEP1} ")) + "\n",
    "svc-flushed": lambda t: "\n".join(line for line in lines_of(t) if not line.startswith(f"-A {SVC} ")) + "\n",
    "masq-jump-only": lambda t: t.replace(f"-A {SVC} -j {SEP3}", f"-A {SVC} -j KUBE-MARK-MASQ"),
    "bang-src": lambda t: insert_after_first(t, f"-A {SVC} -m statistic", f"-A {SVC} -s ! -j {SEP3}", before=True),
    "dnat-hyphen-chain": lambda t: t.replace(f"-A {SVC} -j {SEP3}", f"-A {SVC} -j KUBE-SEPX"),
    "postrouting-plain": lambda t: insert_after_first(t, "-A KUBE-POSTROUTING", ["-A KUBE-POSTROUTING -j ACCEPT", "-A KUBE-POSTROUTING -s 10.0.0.0/8 -j RETURN"], before=True),
    "mark-masq-plain": lambda t: insert_after_first(t, "-A KUBE-MARK-MASQ", "-A KUBE-MARK-MASQ -p tcp -m tcp -j DNAT --to-destination 1.1.1.1:1", before=True),
}


def main(out: Path) -> None:
    for name, edit in M.items():
        dst = out / name
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(SRC, dst)
        for f in dst.iterdir():
            f.chmod(0o644)
        for f in ("iptables-save.txt", "iptables-nft-save.txt"):
            p = dst / f
            text = strip(p.read_text())
            new = edit(text)
            assert name == "base" or new != text, name
            p.write_text(new)
    print(len(M), "captures in", out)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
