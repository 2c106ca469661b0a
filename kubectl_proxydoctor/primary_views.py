"""Which of a node's programmed views kube-proxy itself writes: the active mode's main backend, and
the other backends of that mode (e.g. a stale iptables-legacy copy next to iptables-nft).

Below analysis and checks/drift_compare, which both split views this way.
"""

from __future__ import annotations

from kubectl_proxydoctor.model import ProgrammedView


def _backend(view: ProgrammedView) -> str:
    """A view's backend, one name for both families (ip6tables-legacy -> iptables-legacy)."""
    return view.source.replace("ip6tables", "iptables")


def split_views(
    views: list[ProgrammedView], mode: str | None
) -> tuple[list[ProgrammedView], dict[str, list[ProgrammedView]]]:
    """The views kube-proxy itself writes (the active mode's main backend) and the other backends
    of the same mode (e.g. a stale iptables-legacy copy), by backend name."""
    mine = [v for v in views if mode is None or v.mode == mode]
    if not mine:
        return [], {}
    counts: dict[str, int] = {}
    for v in mine:
        counts[_backend(v)] = counts.get(_backend(v), 0) + len(v.ports)
    primary = max(sorted(counts), key=lambda b: (counts[b], "legacy" not in b))
    secondary: dict[str, list[ProgrammedView]] = {}
    for v in mine:
        if _backend(v) != primary and v.ports:
            secondary.setdefault(_backend(v), []).append(v)
    return [v for v in mine if _backend(v) == primary], secondary
