"""A packet through every mode's tracer, under the same error policy as interpretation.

`trace`, `svc` and the TUI all trace through ``trace_modes``: a mode without a tracer in this build
is skipped; a tracer that cannot read its rules (ProxyDoctorError) or fails (any other exception, a
bug) gives a ``ModeTrace`` with ``error`` set, so each command shows the failure and the other
modes' results instead of a traceback or nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kubectl_proxydoctor import modes as mode_packages
from kubectl_proxydoctor.errors import ProxyDoctorError
from kubectl_proxydoctor.model import Packet, TraceResult
from kubectl_proxydoctor.modes import MODES
from kubectl_proxydoctor.node_state import mode_module
from kubectl_proxydoctor.snapshot import NodeSnapshot
from kubectl_proxydoctor.sources import unknown_rule_lines


@dataclass
class ModeTrace:
    """One mode's trace of a packet: its results, or why there are none."""

    mode: str
    results: list[TraceResult] = field(default_factory=list)
    error: str | None = None  # the rules could not be read, or the tracer failed


def trace_mode(snapshot: NodeSnapshot, packet: Packet, mode: str) -> ModeTrace | None:
    """``mode``'s trace of ``packet``; None when this build has no tracer for it."""
    module = mode_module(mode)
    if module is None or not hasattr(module, "trace"):
        return None
    try:
        return ModeTrace(mode, list(mode_packages.trace_all(snapshot, packet, (mode,))))
    except ModuleNotFoundError as e:  # a tracer not installed in this build
        if (e.name or "").startswith("kubectl_proxydoctor.modes"):
            return None
        return ModeTrace(mode, error=f"{mode} tracer failed ({type(e).__name__}: {e})")
    except ProxyDoctorError as e:
        return ModeTrace(mode, error=str(e))
    except Exception as e:  # noqa: BLE001 - a tracer bug: that mode is not traced, never a traceback
        return ModeTrace(mode, error=f"{mode} tracer failed ({type(e).__name__}: {e})")


def trace_modes(snapshot: NodeSnapshot, packet: Packet, modes: tuple[str, ...] = MODES) -> list[ModeTrace]:
    """Every mode's trace of ``packet`` (modes without a tracer in this build are left out)."""
    return [t for t in (trace_mode(snapshot, packet, m) for m in modes) if t is not None]


def trace_unknown_lines(snapshot: NodeSnapshot, modes: tuple[str, ...], traced: set[str],
                        mode: str | None = None) -> list[str]:
    """Why a trace may be incomplete (non-empty: `trace` exits 3); ``traced``: the modes whose rules
    gave a result; ``mode``: NodeState's mode decision (decided here only for a caller without a
    state). With results, only the mode that programs the node counts, as in `check`: another
    mode's unreadable rules do not make a complete trace unknown, but results only from another
    mode's leftovers do not stand for the programming mode's rules that were not read."""
    if not traced:
        return unknown_rule_lines(snapshot, modes, False)
    if mode is None:
        from kubectl_proxydoctor.proxy_mode import decide  # only for a caller without a NodeState

        mode = str(decide(snapshot).mode)
    if mode not in modes:
        return unknown_rule_lines(snapshot, modes, True)
    return unknown_rule_lines(snapshot, (mode,), mode in traced)
