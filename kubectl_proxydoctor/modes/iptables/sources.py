"""Which iptables dumps a snapshot holds: one per backend and family, never the same rules twice.

``iptables-nft-save.txt`` / ``iptables-legacy-save.txt`` (and ip6tables-*) are read as they are;
``iptables-save.txt`` only when it is not a copy of one of those (its header names the backend).
An empty file means that backend has no rules. Each dump is parsed once per snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubectl_proxydoctor.modes.iptables.parse import Ruleset, parse
from kubectl_proxydoctor.snapshot import NodeSnapshot

_BACKENDS = (("nft", "nf_tables"), ("legacy", "legacy"))


@dataclass
class Dump:
    """One parsed dump: source name (e.g. "iptables-nft"), capture file, family, ruleset."""

    source: str
    filename: str
    family: int
    ruleset: Ruleset


def _parse_cached(snapshot: NodeSnapshot, filename: str, family: int) -> Ruleset:
    text = snapshot.text(filename) or ""
    return snapshot.derived(f"iptables.ruleset:{filename}", (filename,),
                            lambda: parse(text, source=filename, family=family))


class _NotParsed(Exception):
    pass


def _not_parsed() -> Ruleset:
    raise _NotParsed


def parsed(snapshot: NodeSnapshot, filename: str) -> Ruleset | None:
    """The Ruleset of ``filename`` when this snapshot has already parsed it (else None, and nothing
    is parsed): proxy_mode then reads its chain facts from it instead of scanning the text again."""
    try:
        return snapshot.derived(f"iptables.ruleset:{filename}", (filename,), _not_parsed)
    except _NotParsed:
        return None


def _backend_of(text: str) -> str | None:
    head = text.lstrip()[:300]
    if not head.startswith("#"):
        return None
    first = head.splitlines()[0]
    if "(nf_tables)" in first:
        return "nf_tables"
    return "legacy" if "-save v" in first else None


def dumps(snapshot: NodeSnapshot) -> list[Dump]:
    """Every non-empty iptables dump in the snapshot, parsed (ParseError on malformed text)."""
    out: list[Dump] = []
    for family, prefix in ((4, "iptables"), (6, "ip6tables")):
        present: set[str] = set()
        for short, backend in _BACKENDS:
            filename = f"{prefix}-{short}-save.txt"
            if not snapshot.has(filename):
                continue
            present.add(backend)
            if (snapshot.text(filename) or "").strip():
                ruleset = _parse_cached(snapshot, filename, family)
                out.append(Dump(f"{prefix}-{short}", filename, family, ruleset))
        plain = f"{prefix}-save.txt"
        text = snapshot.text(plain)
        if text and text.strip():
            written_by = _backend_of(text)
            if written_by is None or written_by not in present:
                backend_short = {"nf_tables": "nft", "legacy": "legacy"}.get(written_by or "")
                source = f"{prefix}-{backend_short}" if backend_short else prefix
                if not any(d.source == source for d in out):
                    out.append(Dump(source, plain, family, _parse_cached(snapshot, plain, family)))
    return out


_IPVS_NAT_CHAINS = ("KUBE-LOAD-BALANCER", "KUBE-NODE-PORT", "KUBE-LOOP-BACK", "KUBE-FIRE-WALL")


def ipvs_layout(ruleset: Ruleset) -> bool:
    """True for the helper chains of kube-proxy's IPVS mode (no KUBE-SVC-* service chains): the
    services live in IPVS, so these rules alone say nothing about where a packet goes."""
    nat = ruleset.tables.get("nat")
    if nat is None or not any(c in nat.chains for c in _IPVS_NAT_CHAINS):
        return False
    return not any(c.startswith("KUBE-SVC-") for c in nat.chains)
