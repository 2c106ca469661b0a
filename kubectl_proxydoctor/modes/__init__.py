"""Per-mode interpreters (iptables, nftables, IPVS) into the mode-independent programmed view.

Each mode is a package ``modes/<mode>/`` exposing:

- ``interpret(snapshot) -> list[ProgrammedView]``: one view per rule source it finds in the
  snapshot (e.g. one per iptables backend and family); an empty list when the mode has no rules.
- ``trace(snapshot, packet) -> list[TraceResult]``: the packet through each of those sources.
"""

from __future__ import annotations

import importlib

from kubectl_proxydoctor.model import Packet, ProgrammedView, TraceResult
from kubectl_proxydoctor.snapshot import NodeSnapshot

MODES = ("iptables", "nftables", "ipvs")


def _mode_module(mode: str):
    return importlib.import_module(f"{__name__}.{mode}")


def interpret_all(snapshot: NodeSnapshot, modes: tuple[str, ...] = MODES) -> list[ProgrammedView]:
    """Every programmed view the snapshot holds, over all modes."""
    views: list[ProgrammedView] = []
    for mode in modes:
        views.extend(_mode_module(mode).interpret(snapshot))
    return views


def trace_all(snapshot: NodeSnapshot, packet: Packet, modes: tuple[str, ...] = MODES) -> list[TraceResult]:
    """The packet traced through every mode's rules found in the snapshot."""
    results: list[TraceResult] = []
    for mode in modes:
        results.extend(_mode_module(mode).trace(snapshot, packet))
    return results
