"""The process exit status: one enum, and the one function that combines what a run found.

Precedence (README "Exit codes"):

- For one node (``Scope.NODE``: check, svc, status, trace, serve, npd) UNKNOWN wins over PROBLEM: when a
  source that was asked for could not be read, the findings are partial, and the unread source is
  the root cause to fix first (an error found without the API or the rules is not the whole story).
- Across nodes (``Scope.FLEET``: scan, migrate-check's cluster verdict) PROBLEM wins over UNKNOWN:
  a node that was read and drifts is a fact that one unreadable node cannot make less true.

USAGE is not combined: a usage error stops the run before anything is found.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum, StrEnum


class ExitStatus(IntEnum):
    """Documented exit codes (README "Exit codes")."""

    OK = 0  # healthy
    PROBLEM = 1  # drift found (an error finding), or not ready
    USAGE = 2  # usage error
    UNKNOWN = 3  # could not read what was asked


class Scope(StrEnum):
    NODE = "node"
    FLEET = "fleet"


_PRECEDENCE: dict[Scope, tuple[ExitStatus, ...]] = {  # strongest first
    Scope.NODE: (ExitStatus.UNKNOWN, ExitStatus.PROBLEM, ExitStatus.OK),
    Scope.FLEET: (ExitStatus.PROBLEM, ExitStatus.UNKNOWN, ExitStatus.OK),
}

# node-problem-detector's custom plugin contract: 0 OK, 1 problem, 2 unknown
NPD_CODES: dict[ExitStatus, int] = {ExitStatus.OK: 0, ExitStatus.PROBLEM: 1, ExitStatus.UNKNOWN: 2}


def combine(statuses: Iterable[ExitStatus], scope: Scope = Scope.NODE) -> ExitStatus:
    """The exit status of a run that found ``statuses`` (OK when it found nothing)."""
    found = set(statuses)
    if ExitStatus.USAGE in found:
        raise ValueError("a usage error is not combined with findings")
    return next((s for s in _PRECEDENCE[scope] if s in found), ExitStatus.OK)


def status_of(*, problem: bool = False, unknown: bool = False, scope: Scope = Scope.NODE) -> ExitStatus:
    """``combine`` for the two facts a command knows: it found a problem, something was unknown."""
    return combine([s for s, on in ((ExitStatus.PROBLEM, problem), (ExitStatus.UNKNOWN, unknown)) if on],
                   scope)
