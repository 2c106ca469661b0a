"""Issue 18: what one stage hands the next is typed; no object gets attributes stuffed into its
``__dict__`` by another module (a view carrying a check's interpreter, a ruleset a list of problems)."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "kubectl_proxydoctor"
FOREIGN_DICT = re.compile(r"\b(?!self\b)\w+\.__dict__\s*[\[.]")


def test_no_module_writes_into_another_objects_dict() -> None:
    found = [f"{p.relative_to(PACKAGE)}:{n}: {line.strip()}"
             for p in sorted(PACKAGE.rglob("*.py"))
             for n, line in enumerate(p.read_text().splitlines(), 1) if FOREIGN_DICT.search(line)]
    assert found == []


def test_a_check_names_a_chain_from_the_parsed_dump_without_a_second_interpreter() -> None:
    from kubectl_proxydoctor.modes.iptables.parse import parse
    from kubectl_proxydoctor.modes.iptables.view import chain_owner, interpret_ruleset

    fixture = Path(__file__).resolve().parent / "fixtures" / "upstream" / "iptables" / "k8s-1.33plus"
    rs = parse((fixture / "iptables-save.txt").read_text())
    view = interpret_ruleset(rs, "iptables-nft")
    owners = {str(chain_owner(rs, name)) for t in rs.tables.values() for name in t.chains
              if name.startswith("KUBE-SVC-")}
    assert owners and "None" not in owners
    assert owners <= {str(name) for name, _fam in view.ports}
    index = rs.port_hashes  # computed on the first question, kept on the dump: asked again, reused
    assert index is not None and chain_owner(rs, "KUBE-SVC-NOPE") is None and rs.port_hashes is index
