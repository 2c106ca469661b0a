"""Programming latency seen from outside kube-proxy (pure: the caller passes the time).

For every API change that affects the node (a Service, its EndpointSlices, the Node), the time until
the node's rules reflect it. A change is *recorded* when the API watch delivers it; the first analysis
that includes it *decides* whether it needs new rules (the service's expected signature changed);
each later analysis reads the rules and *resolves* it when the service has no drift any more. The
rules changed between the last read that still showed the drift and the first that did not: the
latency is the middle of that bracket (its half-width is the measurement's resolution, about half the
re-read period). A change not reflected after ``timeout`` seconds is given up as "not yet after N s".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

NODE_KEY = "node"  # a change to the Node itself: reflected when no service drifts


@dataclass
class Change:
    """One API change waiting to be seen in the rules."""

    key: str  # "namespace/name" of the service, or NODE_KEY
    at: float  # when the watch delivered it
    seq: int  # the watch cache's sequence number after applying it
    what: str  # e.g. "MODIFIED EndpointSlice default/web-abc12"
    decided: bool = False
    drifting_at: float | None = None  # the last rules read that did not reflect it yet


@dataclass(frozen=True)
class Result:
    """A change's outcome: ``latency`` seconds until the rules reflected it (between ``low`` and
    ``high``), or None (timed out after ``waited`` s)."""

    key: str
    what: str
    latency: float | None
    waited: float
    low: float = 0.0
    high: float = 0.0


class LatencyTracker:
    """Pending API changes and their outcomes (see module doc)."""

    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.pending: list[Change] = []

    def record(self, key: str, at: float, seq: int, what: str) -> None:
        """An API change affecting ``key`` was seen at ``at`` (cache sequence ``seq``)."""
        self.pending.append(Change(key, at, seq, what))

    def observe(
        self,
        included_seq: int,
        rules_read_at: float | tuple[float, float],
        before: Mapping[str, tuple],
        after: Mapping[str, tuple],
        drifting: Callable[[str], bool],
    ) -> list[Result]:
        """One analysis: of the API up to ``included_seq``, of rules read at ``rules_read_at``: a
        time, or (still_at, reflected_at) for a read that took a while: a read that finds a change
        not reflected shows the rules lacked it until ``still_at``; one that finds it reflected
        shows it was there by ``reflected_at``.

        ``before``/``after`` are the per-service signatures of the previous and this analysis;
        ``drifting(key)`` says whether the key still differs from the API in the rules."""
        if isinstance(rules_read_at, tuple):
            still_at, reflected_at = rules_read_at
        else:
            still_at = reflected_at = rules_read_at
        results: list[Result] = []
        keep: list[Change] = []
        for change in self.pending:
            if change.seq > included_seq:  # not in this analysis's API view yet
                keep.append(change)
                continue
            if not change.decided:
                change.decided = True
                if change.key != NODE_KEY and before.get(change.key) == after.get(change.key):
                    continue  # nothing to program for this node
            if not drifting(change.key):
                high = max(0.0, reflected_at - change.at)
                low = min(high, max(0.0, (change.drifting_at or change.at) - change.at))
                results.append(Result(change.key, change.what, (low + high) / 2, high, low, high))
                continue
            waited = max(0.0, still_at - change.at)
            if waited >= self.timeout:
                results.append(Result(change.key, change.what, None, waited))
            else:
                change.drifting_at = max(change.drifting_at or change.at, still_at)
                keep.append(change)
        self.pending = keep
        return results

    def unchanged_rules(self, at: float) -> list[Result]:
        """The rules are known not to have changed since the last read (same ruleset generation):
        every change that read found not reflected is still not reflected at ``at``; those waiting
        longer than the timeout are given up (returned)."""
        results: list[Result] = []
        keep: list[Change] = []
        for change in self.pending:
            if change.decided:
                change.drifting_at = max(change.drifting_at or change.at, at)
                if at - change.at >= self.timeout:
                    results.append(Result(change.key, change.what, None, at - change.at))
                    continue
            keep.append(change)
        self.pending = keep
        return results

    @property
    def waiting(self) -> int:
        """Changes decided to need rules and not reflected yet (plus undecided ones)."""
        return len(self.pending)
